//! The policy loader: raw serde shapes of the TOML file, then a validation pass that reports
//! every problem with file, line, column and key (cargo-deny's habit).

use super::*;
// Raw shapes of the file. Values that can be wrong in more than one way are kept as spanned
// strings/integers so the validation pass can report each problem where it is.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActions {
    safe: Option<Spanned<String>>,
    suspicious: Option<Spanned<String>>,
    dangerous: Option<Spanned<String>>,
    error: Option<Spanned<String>>,
    unsupported: Option<Spanned<String>>,
}

impl RawActions {
    fn entries(self) -> impl Iterator<Item = (Verdict, Spanned<String>)> {
        [
            (Verdict::Safe, self.safe),
            (Verdict::Suspicious, self.suspicious),
            (Verdict::Dangerous, self.dangerous),
            (Verdict::Error, self.error),
            (Verdict::Unsupported, self.unsupported),
        ]
        .into_iter()
        .filter_map(|(v, a)| Some((v, a?)))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_depth: Option<Spanned<i64>>,
    max_expanded_bytes: Option<Spanned<i64>>,
    max_buffered_bytes: Option<Spanned<i64>>,
    max_members: Option<Spanned<i64>>,
    max_pickle_opcodes: Option<Spanned<i64>>,
    max_pickle_values: Option<Spanned<i64>>,
    max_nested_pickle_bytes: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImport {
    name: Option<Spanned<String>>,
    sha256: Option<Spanned<String>>,
    blob: Option<Spanned<String>>,
    // A TOML date (or a `YYYY-MM-DD` string), read from the table itself.
    #[allow(dead_code)]
    expires: Option<IgnoredAny>,
    reason: Option<Spanned<String>>,
}

type Strings = Spanned<Vec<Spanned<String>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    paths: Option<Strings>,
    repos: Option<Strings>,
    refs: Option<Strings>,
    formats: Option<Strings>,
    not_formats: Option<Strings>,
    // Loaded separately as `RawActions` so that every unknown key in it is reported.
    #[allow(dead_code)]
    actions: Option<IgnoredAny>,
    action: Option<Spanned<String>>,
    reason: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    on_error: Option<Spanned<String>>,
    lfs_missing: Option<Spanned<String>>,
    max_file_size: Option<Spanned<i64>>,
    file_timeout: Option<Spanned<String>>,
    push_timeout: Option<Spanned<String>>,
    max_file_read_bytes: Option<Spanned<i64>>,
    max_push_read_bytes: Option<Spanned<i64>>,
    notes_ref: Option<Spanned<String>>,
    audit_log: Option<Spanned<String>>,
    cache_dir: Option<Spanned<String>>,
    trust_env: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBypass {
    pushers: Option<Strings>,
    pusher_env: Option<Spanned<String>>,
    reason: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIgnore {
    code: Option<Spanned<String>>,
    paths: Option<Spanned<Vec<Spanned<String>>>>,
    reason: Option<Spanned<String>>,
}

const SECTIONS: &[&str] = &["actions", "limits", "gate", "lfs", "bypass", "allow", "deny", "rule", "ignore", "clamav"];

const MIB: i64 = 1 << 20;
/// `(key, min, max)` of every `[limits]` budget.
const LIMIT_RANGES: &[(&str, i64, i64)] = &[
    ("max_depth", 1, 64),
    ("max_expanded_bytes", MIB, 1 << 40),
    ("max_buffered_bytes", MIB, 16 << 30),
    ("max_members", 1, 100_000_000),
    ("max_pickle_opcodes", 1_000, 10_000_000_000),
    ("max_pickle_values", 1_000, 100_000_000),
    ("max_nested_pickle_bytes", 4096, 4 << 30),
];

/// Validate policy text; `origin` names it in problems.
pub(super) fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
    let mut l = Loader { origin, text, problems: Vec::new() };
    let policy = l.load();
    if l.problems.is_empty() {
        if let Some(p) = policy {
            return Ok(p);
        }
    }
    let mut problems = l.problems;
    problems.sort_by_key(|p| (p.line, p.column));
    problems.dedup();
    Err(PolicyError { origin: origin.to_string(), problems })
}

struct Loader<'a> {
    origin: &'a str,
    text: &'a str,
    problems: Vec<Problem>,
}

impl Loader<'_> {
    fn problem(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.problems.push(Problem { line, column, key: key.into(), message: message.into() });
    }

    fn load(&mut self) -> Option<Policy> {
        let (root, errors) = DeTable::parse_recoverable(self.text);
        for e in &errors {
            let span = e.span().unwrap_or(0..0);
            // Syntax errors carry no key; when the span covers a bare key, name it.
            let text = self.text.get(span.clone()).unwrap_or("");
            let is_key = !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            self.problem(span, if is_key { text } else { "" }, e.message().to_string());
        }
        if !errors.is_empty() {
            return None;
        }
        let root = root.into_inner();
        for (k, _) in root.iter() {
            if !SECTIONS.contains(&k.get_ref().as_ref()) {
                let msg = format!("unknown section `{}`; expected one of: {}", k.get_ref(), SECTIONS.join(", "));
                self.problem(k.span(), k.get_ref().to_string(), msg);
            }
        }

        let mut actions = Actions::default();
        if let Some(raw) = root.get("actions").and_then(|v| self.table::<RawActions>(v, "actions")) {
            for (verdict, a) in self.actions(raw, "actions") {
                *actions.slot(verdict) = a;
            }
        }

        let mut options = ScanOptions::default();
        if let Some(raw) = root.get("limits").and_then(|v| self.table::<RawLimits>(v, "limits")) {
            self.limits(raw, &mut options);
        }
        if let Some(v) = root.get("clamav") {
            match self.table::<crate::clamav::RawClamav>(v, "clamav").map(|raw| raw.validate(v.span())) {
                Some(Ok(c)) => options.clamav = Some(Arc::new(c)),
                Some(Err(problems)) => problems.into_iter().for_each(|(span, key, msg)| self.problem(span, key, msg)),
                None => {}
            }
        }

        let mut gate = GateSettings::default();
        if let Some(raw) = root.get("gate").and_then(|v| self.table::<RawGate>(v, "gate")) {
            self.gate(raw, &mut gate);
        }

        let mut lfs = LfsStore::default();
        if let Some(v) = root.get("lfs") {
            if let Some(store) = self.table::<LfsStore>(v, "lfs") {
                match store.validate() {
                    Ok(()) => lfs = store,
                    Err(e) => self.problem(v.span(), "lfs", e.0),
                }
            }
        }

        let mut bypass = Bypass::default();
        if let Some(v) = root.get("bypass") {
            if let Some(raw) = self.table::<RawBypass>(v, "bypass") {
                bypass = self.bypass(raw, v.span());
            }
        }

        let mut lists = Lists::builtin();
        let mut digest = sha2::Sha256::new();
        let mut entries = Entries { lists: &mut lists, pinned: Vec::new(), expired: Vec::new(), today: Date::today() };
        for (section, deny) in [("allow", false), ("deny", true)] {
            for (i, e) in self.array::<RawImport>(&root, section).into_iter().enumerate() {
                if let Some(name) = self.import_entry(e, i, deny, &mut entries) {
                    digest.update(format!("{section}\0{name}\n").as_bytes());
                }
            }
        }
        let (pinned, expired) = (entries.pinned, entries.expired);
        options.lists = Arc::new(lists);
        let lists_digest = digest.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect();

        let mut rules = Vec::new();
        for e in self.array::<RawRule>(&root, "rule") {
            if let Some(r) = self.rule(e) {
                rules.push(r);
            }
        }

        let mut exceptions = Vec::new();
        for e in self.array::<RawIgnore>(&root, "ignore") {
            if let Some(x) = self.exception(e) {
                exceptions.push(x);
            }
        }

        Some(Policy {
            origin: self.origin.to_string(),
            actions,
            rules,
            exceptions,
            pinned,
            expired,
            gate,
            lfs,
            bypass,
            options,
            lists_digest,
        })
    }

    /// Deserialize one table, after reporting (and removing) every key `T` does not know.
    fn table<T: DeserializeOwned>(&mut self, value: &Spanned<DeValue<'_>>, key: &str) -> Option<T> {
        let Some(table) = value.get_ref().as_table() else {
            let msg = format!("expected a table, found {}", value.get_ref().type_str());
            self.problem(value.span(), key, msg);
            return None;
        };
        let known = fields_of::<T>();
        let mut table = table.clone();
        let unknown: Vec<_> = table.keys().filter(|k| !known.contains(&k.get_ref().as_ref())).cloned().collect();
        for k in unknown {
            let msg = format!("unknown key `{}`; expected one of: {}", k.get_ref(), known.join(", "));
            self.problem(k.span(), format!("{key}.{}", k.get_ref()), msg);
            table.remove(k.get_ref().as_ref());
        }
        let span = value.span();
        match T::deserialize(ValueDeserializer::from(Spanned::new(span.clone(), DeValue::Table(table)))) {
            Ok(t) => Some(t),
            Err(e) => {
                let at = e.span().unwrap_or(span);
                let path = key_path(value, at.start).map(|p| format!("{key}{p}")).unwrap_or_else(|| key.to_string());
                self.problem(at, path, e.message().to_string());
                None
            }
        }
    }

    /// Deserialize every table of an array of tables (`[[section]]`), keyed `section[i]`.
    fn array<'r, 'i, T: DeserializeOwned>(&mut self, root: &'r DeTable<'i>, section: &str) -> Vec<Entry<'r, 'i, T>> {
        let Some(value) = root.get(section) else { return Vec::new() };
        let Some(items) = value.get_ref().as_array() else {
            let msg = format!("expected an array of tables (`[[{section}]]`), found {}", value.get_ref().type_str());
            self.problem(value.span(), section, msg);
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let key = format!("{section}[{i}]");
            if let Some(raw) = self.table::<T>(item, &key) {
                out.push(Entry { key, raw, value: item });
            }
        }
        out
    }

    fn actions(&mut self, raw: RawActions, key: &str) -> Vec<(Verdict, Action)> {
        let mut out = Vec::new();
        for (verdict, value) in raw.entries() {
            match Action::parse(value.get_ref()) {
                Some(a) => out.push((verdict, a)),
                None => {
                    let msg = format!("unknown action `{}`; expected `reject`, `tag` or `allow`", value.get_ref());
                    self.problem(value.span(), format!("{key}.{verdict}"), msg);
                }
            }
        }
        out
    }

    fn limits(&mut self, raw: RawLimits, o: &mut ScanOptions) {
        let values = [
            raw.max_depth,
            raw.max_expanded_bytes,
            raw.max_buffered_bytes,
            raw.max_members,
            raw.max_pickle_opcodes,
            raw.max_pickle_values,
            raw.max_nested_pickle_bytes,
        ];
        for (value, &(name, min, max)) in values.into_iter().zip(LIMIT_RANGES) {
            let Some(v) = value else { continue };
            let n = *v.get_ref();
            if n < min || n > max {
                self.problem(v.span(), format!("limits.{name}"), format!("{n} is out of range {min}..={max}"));
                continue;
            }
            let u = n.unsigned_abs();
            match name {
                "max_depth" => o.max_depth = u32::try_from(u).unwrap_or(u32::MAX),
                "max_expanded_bytes" => o.max_expanded_bytes = u,
                "max_buffered_bytes" => o.max_buffered_bytes = u,
                "max_members" => o.max_members = u,
                "max_pickle_opcodes" => o.max_pickle_opcodes = u,
                "max_pickle_values" => o.max_pickle_values = usize::try_from(u).unwrap_or(usize::MAX),
                _ => o.max_nested_pickle_bytes = u,
            }
        }
    }

    /// The required, non-empty `reason` of an entry.
    fn reason(&mut self, reason: Option<Spanned<String>>, entry: Span, key: &str, what: &str) -> Option<String> {
        match reason {
            Some(r) if !r.get_ref().trim().is_empty() => Some(r.into_inner()),
            Some(r) => {
                self.problem(r.span(), format!("{key}.reason"), format!("`reason` is empty: say why {what}"));
                None
            }
            None => {
                self.problem(entry, format!("{key}.reason"), format!("`reason` is required: say why {what}"));
                None
            }
        }
    }

    /// One `[[allow]]` / `[[deny]]` entry: an import name (added to the lists; returned for the
    /// lists digest when applied) or, for `[[allow]]`, a pin to content.
    fn import_entry(
        &mut self,
        Entry { key, raw, value }: Entry<'_, '_, RawImport>,
        index: usize,
        deny: bool,
        out: &mut Entries<'_>,
    ) -> Option<String> {
        let (key, span) = (key.as_str(), value.span());
        let given: Vec<(&str, &Spanned<String>)> = [("name", &raw.name), ("sha256", &raw.sha256), ("blob", &raw.blob)]
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.as_ref()?)))
            .collect();
        if deny {
            if let Some((k, v)) = given.iter().find(|(k, _)| *k != "name") {
                let msg = format!(
                    "`{k}` pins an entry to content, which only `[[allow]]` does; `[[deny]]` names imports (`name`)"
                );
                self.problem(v.span(), format!("{key}.{k}"), msg);
                return None;
            }
        }
        let what = match (deny, given.first().map(|(k, _)| *k)) {
            (true, _) => "this import is denied",
            (false, Some("sha256" | "blob")) => "this exact file may pass whatever it holds",
            _ => "this import is safe to load",
        };
        let reason = self.reason(raw.reason, span.clone(), key, what);
        let expires_value = value.get_ref().as_table().and_then(|t| t.get("expires"));
        let expires = match expires_value {
            Some(v) => Some(self.date(v, &format!("{key}.expires"))?),
            None => None,
        };
        let (field, text) = match given.as_slice() {
            [] => {
                let msg = if deny {
                    "`name` is required (`module.name`, `module` or `module.*`)"
                } else {
                    "`name` is required (an import: `module.name`, `module` or `module.*`), or `sha256` / `blob` (one file's content)"
                };
                self.problem(span, format!("{key}.name"), msg);
                return None;
            }
            [one] => *one,
            [_, (k, v), ..] => {
                let msg = format!(
                    "set one of `name`, `sha256` or `blob` per entry (found {}); write one entry per file or import",
                    given.iter().map(|(k, _)| format!("`{k}`")).collect::<Vec<_>>().join(" and ")
                );
                self.problem(v.span(), format!("{key}.{k}"), msg);
                return None;
            }
        };
        if field != "name" {
            let pin = self.pin(field, text, key)?;
            let reason = reason?;
            let line = line_col(self.text, span.start).0;
            out.pinned.push(PinnedAllow { pin, reason, entry: index, line, expires });
            return None;
        }
        let text = text.get_ref().trim();
        let components_ok = !text.is_empty()
            && text.split('.').enumerate().all(|(i, c)| {
                let last = i + 1 == text.split('.').count();
                (c == "*" && last && i > 0) || (!c.is_empty() && c.chars().all(|ch| ch.is_alphanumeric() || ch == '_'))
            });
        if !components_ok {
            let msg = if text.is_empty() {
                "`name` is empty; expected `module.name`, `module` or `module.*`".to_string()
            } else {
                format!("`{text}` is not an import name; expected `module.name`, `module` or `module.*`")
            };
            self.problem(raw.name.as_ref().map_or(span, Spanned::span), format!("{key}.name"), msg);
            return None;
        }
        let reason = reason?;
        if let Some(e) = expires.filter(|e| out.today > *e) {
            let line = line_col(self.text, span.start).0;
            out.expired.push(ExpiredEntry { entry: index, line, name: text.to_string(), expires: e });
            return None;
        }
        let added = if deny { out.lists.deny(text, &reason) } else { out.lists.allow(text, &reason) };
        match added {
            Ok(_) => Some(text.to_string()),
            Err(e) => {
                self.problem(raw.name.as_ref().map_or(span, Spanned::span), format!("{key}.name"), e);
                None
            }
        }
    }

    /// A content pin: lowercase hex of the right length (`sha256:` accepted before a sha256).
    fn pin(&mut self, field: &str, value: &Spanned<String>, key: &str) -> Option<Pin> {
        let raw = value.get_ref().trim();
        let hex = if field == "sha256" { raw.strip_prefix("sha256:").unwrap_or(raw) } else { raw };
        let is_hex = !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
        let lens: &[usize] = if field == "sha256" { &[64] } else { &[40, 64] };
        if is_hex && lens.contains(&hex.len()) {
            let hex = hex.to_ascii_lowercase();
            return Some(if field == "sha256" { Pin::Sha256(hex) } else { Pin::Blob(hex) });
        }
        let msg = if field == "sha256" {
            format!("`{raw}` is not a sha256 (64 hex digits, as `sha256sum FILE` or a git lfs pointer's `oid sha256:` gives)")
        } else {
            format!(
                "`{raw}` is not a git blob id (40 hex digits, or 64 in a sha256 repository; `git hash-object FILE`, `git rev-parse HEAD:path`)"
            )
        };
        self.problem(value.span(), format!("{key}.{field}"), msg);
        None
    }

    /// A date: a TOML local date (`2027-01-31`) or the same as a string.
    fn date(&mut self, v: &Spanned<DeValue<'_>>, key: &str) -> Option<Date> {
        let bad = "expected a date such as `2027-01-31` (the last day the entry applies, UTC)";
        let parsed = match v.get_ref() {
            DeValue::Datetime(dt) if dt.time.is_none() && dt.offset.is_none() => {
                dt.date.and_then(|d| Date::new(i32::from(d.year), d.month, d.day))
            }
            DeValue::String(s) => Date::parse(s.trim()),
            _ => None,
        };
        if parsed.is_none() {
            let found = match v.get_ref() {
                DeValue::Datetime(_) => "a date with a time".to_string(),
                other => other.type_str().to_string(),
            };
            self.problem(v.span(), key, format!("{bad}; found {found}"));
        }
        parsed
    }

    /// Build a glob set from `paths`; `None` after reporting problems.
    fn globs(&mut self, paths: &Strings, key: &str) -> Option<GlobSet> {
        self.glob_list(paths, key, "paths")
    }

    /// Build a glob set from the list `field` of entry `key`; `None` after reporting problems.
    fn glob_list(&mut self, list: &Strings, key: &str, field: &str) -> Option<GlobSet> {
        if list.get_ref().is_empty() {
            self.problem(list.span(), format!("{key}.{field}"), format!("`{field}` is empty; list at least one glob"));
            return None;
        }
        let mut builder = GlobSetBuilder::new();
        let mut ok = true;
        for (i, p) in list.get_ref().iter().enumerate() {
            match glob(p.get_ref()) {
                Ok(g) => {
                    builder.add(g);
                }
                Err(msg) => {
                    self.problem(p.span(), format!("{key}.{field}[{i}]"), msg);
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        match builder.build() {
            Ok(set) => Some(set),
            Err(e) => {
                self.problem(list.span(), format!("{key}.{field}"), e.kind().to_string());
                None
            }
        }
    }

    /// Validate a list of format names and groups.
    fn format_set(&mut self, list: &Strings, key: &str, field: &str) -> Option<FormatSet> {
        if list.get_ref().is_empty() {
            self.problem(
                list.span(),
                format!("{key}.{field}"),
                format!("`{field}` is empty; list at least one format"),
            );
            return None;
        }
        let mut ok = true;
        for (i, f) in list.get_ref().iter().enumerate() {
            let name = f.get_ref().as_str();
            if !FORMAT_NAMES.contains(&name) && !FORMAT_GROUPS.contains(&name) {
                let msg = format!(
                    "unknown format `{name}`; expected a group ({}) or one of: {}",
                    FORMAT_GROUPS.join(", "),
                    FORMAT_NAMES.join(", ")
                );
                self.problem(f.span(), format!("{key}.{field}[{i}]"), msg);
                ok = false;
            }
        }
        ok.then(|| FormatSet { names: list.get_ref().iter().map(|f| f.get_ref().clone()).collect() })
    }

    fn rule(&mut self, Entry { key, raw, value }: Entry<'_, '_, RawRule>) -> Option<Rule> {
        let (key, span) = (key.as_str(), value.span());
        let reason = self.reason(raw.reason, span.clone(), key, "this rule exists");
        let mut ok = true;
        let mut glob_field = |l: &mut Self, list: &Option<Strings>, field: &str| match list {
            None => None,
            Some(list) => {
                let set = l.glob_list(list, key, field);
                ok &= set.is_some();
                set
            }
        };
        let path_set = glob_field(self, &raw.paths, "paths");
        let repo_set = glob_field(self, &raw.repos, "repos");
        let ref_set = glob_field(self, &raw.refs, "refs");
        let mut format_field = |l: &mut Self, list: &Option<Strings>, field: &str| match list {
            None => None,
            Some(list) => {
                let set = l.format_set(list, key, field);
                ok &= set.is_some();
                set
            }
        };
        let formats = format_field(self, &raw.formats, "formats");
        let not_formats = format_field(self, &raw.not_formats, "not_formats");
        let matchers = [&raw.paths, &raw.repos, &raw.refs, &raw.formats, &raw.not_formats];
        if matchers.iter().all(|m| m.is_none()) {
            self.problem(
                span.clone(),
                format!("{key}.paths"),
                "a rule needs a matcher: `paths`, `repos`, `refs`, `formats` or `not_formats`",
            );
            ok = false;
        }
        let akey = format!("{key}.actions");
        let actions_value = value.get_ref().as_table().and_then(|t| t.get("actions"));
        let actions = match (actions_value, &raw.action) {
            (Some(_), Some(a)) => {
                self.problem(a.span(), format!("{key}.action"), "set either `action` or `actions`, not both");
                None
            }
            (None, Some(a)) => match Action::parse(a.get_ref()) {
                Some(action) => Some(Verdict::ALL.iter().map(|v| (*v, action)).collect()),
                None => {
                    let msg = format!("unknown action `{}`; expected `reject`, `tag` or `allow`", a.get_ref());
                    self.problem(a.span(), format!("{key}.action"), msg);
                    None
                }
            },
            (None, None) => {
                self.problem(
                    span,
                    &akey,
                    "`actions` is required, e.g. `actions = { suspicious = \"reject\" }`, or `action = \"reject\"` for every verdict",
                );
                None
            }
            (Some(v), None) => match (self.problems.len(), self.table::<RawActions>(v, &akey)) {
                (before, Some(raw_actions)) => {
                    let a = self.actions(raw_actions, &akey);
                    if a.is_empty() && self.problems.len() == before {
                        self.problem(v.span(), &akey, "`actions` is empty; set an action for at least one verdict");
                    }
                    Some(a)
                }
                (_, None) => None,
            },
        };
        let (reason, actions) = (reason?, actions?);
        if !ok {
            return None;
        }
        let strings = |l: Option<Strings>| -> Vec<String> {
            l.map(|p| p.into_inner().into_iter().map(Spanned::into_inner).collect()).unwrap_or_default()
        };
        Some(Rule {
            reason,
            line: line_col(self.text, value.span().start).0,
            paths: strings(raw.paths),
            path_set,
            repos: strings(raw.repos),
            repo_set,
            refs: strings(raw.refs),
            ref_set,
            formats,
            not_formats,
            actions,
        })
    }

    fn action_value(&mut self, v: &Spanned<String>, key: &str) -> Option<Action> {
        let a = Action::parse(v.get_ref());
        if a.is_none() {
            let msg = format!("unknown action `{}`; expected `reject`, `tag` or `allow`", v.get_ref());
            self.problem(v.span(), key, msg);
        }
        a
    }

    fn bytes(&mut self, v: &Spanned<i64>, key: &str, min: i64, max: i64) -> Option<u64> {
        let n = *v.get_ref();
        if n < min || n > max {
            self.problem(v.span(), key, format!("{n} is out of range {min}..={max}"));
            return None;
        }
        Some(n.unsigned_abs())
    }

    fn duration(&mut self, v: &Spanned<String>, key: &str) -> Option<Duration> {
        match parse_duration(v.get_ref()) {
            Ok(d) if d >= Duration::from_millis(1) && d <= Duration::from_secs(24 * 3600) => Some(d),
            Ok(_) => {
                self.problem(v.span(), key, format!("`{}` is out of range 1ms..=24h", v.get_ref()));
                None
            }
            Err(msg) => {
                self.problem(v.span(), key, msg);
                None
            }
        }
    }

    fn gate(&mut self, raw: RawGate, g: &mut GateSettings) {
        if let Some(v) = &raw.on_error {
            g.on_error = self.action_value(v, "gate.on_error").unwrap_or(g.on_error);
        }
        if let Some(v) = &raw.lfs_missing {
            g.lfs_missing = self.action_value(v, "gate.lfs_missing").unwrap_or(g.lfs_missing);
        }
        const TIB: i64 = 1 << 40;
        if let Some(v) = &raw.max_file_size {
            g.max_file_size = self.bytes(v, "gate.max_file_size", 1, i64::MAX);
        }
        if let Some(v) = &raw.max_file_read_bytes {
            g.max_file_read_bytes = self.bytes(v, "gate.max_file_read_bytes", 1, 64 * TIB).unwrap_or(0);
        }
        if let Some(v) = &raw.max_push_read_bytes {
            g.max_push_read_bytes = self.bytes(v, "gate.max_push_read_bytes", 1, 64 * TIB).unwrap_or(0);
        }
        if let Some(v) = &raw.file_timeout {
            g.file_timeout = self.duration(v, "gate.file_timeout").unwrap_or_default();
        }
        if let Some(v) = &raw.push_timeout {
            g.push_timeout = self.duration(v, "gate.push_timeout").unwrap_or_default();
        }
        if let Some(v) = &raw.notes_ref {
            match check_notes_ref(v.get_ref()) {
                Ok(()) => g.notes_ref = v.get_ref().clone(),
                Err(msg) => self.problem(v.span(), "gate.notes_ref", msg),
            }
        }
        let path = |l: &mut Self, v: &Option<Spanned<String>>, key: &str, slot: &mut Option<PathBuf>| {
            let Some(v) = v else { return };
            if v.get_ref().is_empty() {
                *slot = None;
            } else if v.get_ref().contains('\0') {
                l.problem(v.span(), key, "a path cannot contain NUL");
            } else {
                *slot = Some(PathBuf::from(v.get_ref()));
            }
        };
        path(self, &raw.audit_log, "gate.audit_log", &mut g.audit_log);
        path(self, &raw.cache_dir, "gate.cache_dir", &mut g.cache_dir);
        if let Some(v) = &raw.trust_env {
            match TrustEnv::parse(v.get_ref()) {
                Some(t) => g.trust_env = t,
                None => {
                    let msg = format!(
                        "unknown environment `{}`; expected `none`, `gitea` (also Forgejo), `gitlab` or `http`",
                        v.get_ref()
                    );
                    self.problem(v.span(), "gate.trust_env", msg);
                }
            }
        }
    }

    fn bypass(&mut self, raw: RawBypass, span: Span) -> Bypass {
        let mut b = Bypass::default();
        if let Some(list) = &raw.pushers {
            for (i, p) in list.get_ref().iter().enumerate() {
                let name = p.get_ref();
                if name.trim().is_empty() || name.chars().any(char::is_control) {
                    self.problem(
                        p.span(),
                        format!("bypass.pushers[{i}]"),
                        "a pusher name cannot be empty or hold control characters",
                    );
                } else {
                    b.pushers.push(name.clone());
                }
            }
        }
        if let Some(v) = &raw.pusher_env {
            let name = v.get_ref();
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if valid {
                b.pusher_env = Some(name.clone());
            } else {
                self.problem(v.span(), "bypass.pusher_env", format!("`{name}` is not an environment variable name"));
            }
        }
        if !b.pushers.is_empty() || raw.reason.is_some() {
            b.reason = self.reason(raw.reason, span, "bypass", "these pushers may skip the gate").unwrap_or_default();
        }
        b
    }

    fn exception(&mut self, Entry { key, raw, value }: Entry<'_, '_, RawIgnore>) -> Option<Exception> {
        let (key, span) = (key.as_str(), value.span());
        let reason = self.reason(raw.reason, span.clone(), key, "these findings are acceptable");
        let code = match raw.code {
            None => {
                self.problem(
                    span.clone(),
                    format!("{key}.code"),
                    "`code` is required (see `modelgate explain --list`)",
                );
                None
            }
            Some(c) => match crate::finding::code_info(c.get_ref()) {
                Some(info) => Some(info.code),
                None => {
                    let near = close_codes(c.get_ref());
                    let hint = if near.is_empty() {
                        "see `modelgate explain --list`".to_string()
                    } else {
                        format!(
                            "did you mean {}?",
                            near.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
                        )
                    };
                    self.problem(c.span(), format!("{key}.code"), format!("unknown code `{}`; {hint}", c.get_ref()));
                    None
                }
            },
        };
        let path_set = match &raw.paths {
            Some(p) => Some(self.globs(p, key)?),
            None => None,
        };
        let paths =
            raw.paths.map(|p| p.into_inner().into_iter().map(Spanned::into_inner).collect()).unwrap_or_default();
        Some(Exception { code: code?, reason: reason?, line: line_col(self.text, span.start).0, paths, path_set })
    }
}

type Span = Range<usize>;

/// Where `[[allow]]` / `[[deny]]` entries go while loading.
struct Entries<'l> {
    lists: &'l mut Lists,
    pinned: Vec<PinnedAllow>,
    expired: Vec<ExpiredEntry>,
    today: Date,
}

/// One table of an array of tables, with its key (`rule[2]`) and its place in the file.
struct Entry<'r, 'i, T> {
    key: String,
    raw: T,
    value: &'r Spanned<DeValue<'i>>,
}

/// Compile one path glob: `*` and `?` stay within a path component, `**` crosses them.
fn glob(pattern: &str) -> Result<Glob, String> {
    if pattern.is_empty() {
        return Err("empty glob".to_string());
    }
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("invalid glob `{pattern}`: {}", e.kind()))
}

/// Parse a duration: a whole number and a unit, `ms`, `s`, `m` or `h` (`250ms`, `30s`, `2m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("`{text}` is not a duration; write a whole number and a unit: `500ms`, `30s`, `2m`, `1h`");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(bad()),
    };
    ms.map(Duration::from_millis).ok_or_else(bad)
}

/// A notes ref git accepts: `refs/notes/<name>` with ordinary ref-name characters.
fn check_notes_ref(name: &str) -> Result<(), String> {
    let rest = name.strip_prefix("refs/notes/").ok_or_else(|| format!("`{name}` does not start with refs/notes/"))?;
    let bad_char = |c: char| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c);
    let ok = !rest.is_empty()
        && !name.chars().any(bad_char)
        && !name.contains("..")
        && !name.contains("@{")
        && !name.ends_with('/')
        && !name.ends_with(".lock")
        && !name.ends_with('.')
        && rest.split('/').all(|c| !c.is_empty() && !c.starts_with('.'));
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` is not a valid notes ref name"))
    }
}

/// Known codes close to a misspelt one, closest first.
pub fn close_codes(code: &str) -> Vec<&'static str> {
    let mut scored: Vec<(usize, &'static str)> = crate::finding::all_codes()
        .into_iter()
        .filter_map(|c| {
            let d = edit_distance(code, c.code);
            let near = d <= (code.len() / 3).max(2) || (code.len() >= 4 && c.code.contains(code));
            near.then_some((d, c.code))
        })
        .collect();
    scored.sort();
    scored.into_iter().take(5).map(|(_, c)| c).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The key path (`.a.b[2]`) below `value` whose key or value covers byte `pos`.
fn key_path(value: &Spanned<DeValue<'_>>, pos: usize) -> Option<String> {
    let covers = |s: Range<usize>| s.contains(&pos) || (s.is_empty() && s.start == pos);
    match value.get_ref() {
        DeValue::Table(t) => t.iter().find_map(|(k, v)| {
            let here = format!(".{}", k.get_ref());
            match key_path(v, pos) {
                Some(below) => Some(here + &below),
                None if covers(k.span()) || covers(v.span()) => Some(here),
                None => None,
            }
        }),
        DeValue::Array(a) => a.iter().enumerate().find_map(|(i, v)| match key_path(v, pos) {
            Some(below) => Some(format!("[{i}]{below}")),
            None if covers(v.span()) => Some(format!("[{i}]")),
            None => None,
        }),
        _ => None,
    }
}

/// The field names a derived `Deserialize` struct accepts. Asking serde itself keeps the
/// unknown-key check and the struct definitions from drifting apart.
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};
    struct Probe(&'static [&'static str]);
    impl<'de> de::Deserializer<'de> for &mut Probe {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = fields;
            Err(de::Error::custom("probed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut probe = Probe(&[]);
    let _ = T::deserialize(&mut probe);
    probe.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_from_serde() {
        assert_eq!(fields_of::<RawImport>(), &["name", "sha256", "blob", "expires", "reason"]);
        assert_eq!(
            fields_of::<RawRule>(),
            &["paths", "repos", "refs", "formats", "not_formats", "actions", "action", "reason"]
        );
        assert_eq!(
            fields_of::<LfsStore>(),
            &[
                "layout",
                "root",
                "template",
                "verify_sha256",
                "bucket",
                "prefix",
                "endpoint",
                "region",
                "path_style",
                "profile"
            ]
        );
    }

    #[test]
    fn line_and_column() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab\ncd", 99), (2, 3));
    }

    #[test]
    fn edit_distance_works() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert!(close_codes("read-eror").contains(&"read-error"));
    }
}
