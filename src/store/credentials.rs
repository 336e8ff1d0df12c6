//! AWS credentials for an S3 store, from where AWS's own tools look, never from the policy:
//! the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) and
//! the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`),
//! profile `AWS_PROFILE` or `default`. The file is the INI text the AWS CLI writes
//! (`aws configure`): `[name]` sections of `key = value` lines, `#` and `;` comments.
//!
//! Order (the AWS SDKs' default chain, with the policy's `profile` first when it names one,
//! as `aws --profile` does): the policy's profile, the environment's keys, the file's
//! profile; without any, the rest of the chain is left to the S3 client (web identity,
//! ECS/EKS container credentials, EC2 instance metadata unless `AWS_EC2_METADATA_DISABLED`).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use crate::lfs::StoreError;
use std::path::PathBuf;

/// Static credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub key_id: String,
    pub secret: String,
    pub token: Option<String>,
    /// Where they came from, for messages (never the secret).
    pub from: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("key_id", &self.key_id).field("from", &self.from).finish_non_exhaustive()
    }
}

/// Where to look, as read from the environment (a seam for tests).
pub struct Env<'a> {
    pub var: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.var)(name).filter(|v| !v.is_empty())
    }
}

/// The credentials to sign with; `Ok(None)` leaves the rest of the chain to the client.
pub fn find(policy_profile: Option<&str>, env: &Env<'_>) -> Result<Option<Credentials>, StoreError> {
    if let Some(p) = policy_profile {
        return from_file(p, true, env).map(Some);
    }
    match (env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")) {
        (Some(key_id), Some(secret)) => {
            return Ok(Some(Credentials {
                key_id,
                secret,
                token: env.get("AWS_SESSION_TOKEN"),
                from: "the environment (AWS_ACCESS_KEY_ID)".into(),
            }))
        }
        (Some(_), None) => return Err(StoreError("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".into())),
        (None, Some(_)) => return Err(StoreError("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not".into())),
        (None, None) => {}
    }
    match env.get("AWS_PROFILE") {
        Some(p) => from_file(&p, true, env).map(Some),
        None => match from_file("default", false, env) {
            Ok(c) => Ok(Some(c)),
            Err(_) if !file_path(env).is_some_and(|p| p.exists()) => Ok(None),
            Err(e) => Err(e),
        },
    }
}

fn file_path(env: &Env<'_>) -> Option<PathBuf> {
    env.get("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| env.get("HOME").map(|h| PathBuf::from(h).join(".aws").join("credentials")))
}

/// The profile's keys from the shared credentials file. `named`: the profile was asked for
/// by name, so its absence is an error rather than a reason to look elsewhere.
fn from_file(profile: &str, named: bool, env: &Env<'_>) -> Result<Credentials, StoreError> {
    let path = file_path(env).ok_or_else(|| StoreError("no AWS credentials file (HOME is not set)".into()))?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        StoreError(format!("cannot read the AWS credentials file {} (profile {profile}): {e}", path.display()))
    })?;
    let section = parse(&text).into_iter().find(|(name, _)| name == profile).map(|(_, kv)| kv);
    let Some(kv) = section else {
        let why = if named { "names no such profile" } else { "has no [default] profile" };
        return Err(StoreError(format!("the AWS credentials file {} {why} ({profile})", path.display())));
    };
    let get = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
    match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(key_id), Some(secret)) => Ok(Credentials {
            key_id,
            secret,
            token: get("aws_session_token"),
            from: format!("profile {profile} of {}", path.display()),
        }),
        _ => Err(StoreError(format!(
            "profile {profile} of the AWS credentials file {} lacks aws_access_key_id or aws_secret_access_key",
            path.display()
        ))),
    }
}

/// Sections of an INI text: `[name]` (also `[profile name]`, as the config file spells
/// them), then `key = value` lines (keys lower-cased, values trimmed). Later duplicates of a
/// key win, as in botocore's parser.
fn parse(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            let name = name.strip_prefix("profile ").map_or(name, str::trim);
            out.push((name.to_string(), Vec::new()));
            continue;
        }
        let Some((k, v)) = line.split_once('=') else { continue };
        if let Some((_, kv)) = out.last_mut() {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            kv.retain(|(key, _)| *key != k);
            kv.push((k, v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(vars: &[(&str, String)]) -> HashMap<String, String> {
        vars.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    fn find_with(profile: Option<&str>, vars: &HashMap<String, String>) -> Result<Option<Credentials>, StoreError> {
        let var = |k: &str| vars.get(k).cloned();
        find(profile, &Env { var: &var })
    }

    #[test]
    fn environment_then_file_then_chain() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "# comment\n[default]\naws_access_key_id = DEF\naws_secret_access_key = defsecret\n\n\
             [gate]\nAWS_ACCESS_KEY_ID=GATE\naws_secret_access_key= gatesecret \naws_session_token = tok\n\
             [profile other]\naws_access_key_id = OTHER\naws_secret_access_key = o\n[broken]\naws_access_key_id = X\n",
        )
        .unwrap();
        let f = file.display().to_string();
        let keys = |c: Option<Credentials>| c.map(|c| (c.key_id, c.secret, c.token));
        // Environment keys first.
        let e = env_of(&[
            ("AWS_ACCESS_KEY_ID", "ENV".into()),
            ("AWS_SECRET_ACCESS_KEY", "envsecret".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", f.clone()),
        ]);
        assert_eq!(keys(find_with(None, &e).unwrap()), Some(("ENV".into(), "envsecret".into(), None)));
        // The policy's profile outranks them.
        assert_eq!(
            keys(find_with(Some("gate"), &e).unwrap()),
            Some(("GATE".into(), "gatesecret".into(), Some("tok".into())))
        );
        // AWS_PROFILE, else [default].
        let e = env_of(&[("AWS_SHARED_CREDENTIALS_FILE", f.clone()), ("AWS_PROFILE", "other".into())]);
        assert_eq!(keys(find_with(None, &e).unwrap()).unwrap().0, "OTHER");
        let e = env_of(&[("AWS_SHARED_CREDENTIALS_FILE", f.clone())]);
        assert_eq!(keys(find_with(None, &e).unwrap()).unwrap().0, "DEF");
        // Named and missing, or incomplete: errors that say so, without secrets.
        let err = find_with(Some("nope"), &e).unwrap_err().0;
        assert!(err.contains("nope") && err.contains("no such profile"), "{err}");
        let err = find_with(Some("broken"), &e).unwrap_err().0;
        assert!(err.contains("aws_secret_access_key"), "{err}");
        assert!(!format!("{:?}", find_with(Some("gate"), &e).unwrap()).contains("gatesecret"));
        let e = env_of(&[("AWS_ACCESS_KEY_ID", "ENV".into())]);
        assert!(find_with(None, &e).is_err());
        // No keys and no file: the client's own chain.
        let e = env_of(&[("HOME", dir.path().join("nohome").display().to_string())]);
        assert_eq!(find_with(None, &e).unwrap(), None);
        let e = env_of(&[("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none").display().to_string())]);
        assert!(find_with(Some("gate"), &e).is_err());
    }
}
