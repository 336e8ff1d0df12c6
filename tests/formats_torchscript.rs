//! TorchScript archives judged by their code (issues 7 and 9). The archives under
//! `tests/fixtures/torchscript/` were made by real torch (`make_torchscript.py`, which also
//! proves with real torch which of them run their payload while loading); the hand-built
//! ones below vary one rule at a time.

mod containers_util;
mod formats_common;

use containers_util::{zip, Z};
use modelgate::engine::FileReport;
use modelgate::finding::{Finding, Verdict};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/torchscript/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn scan(bytes: Vec<u8>) -> FileReport {
    containers_util::scan(bytes)
}

fn findings<'a>(r: &'a FileReport, code: &str) -> Vec<&'a Finding> {
    r.findings.iter().filter(|f| f.code == code).collect()
}

fn only<'a>(r: &'a FileReport, code: &str) -> &'a Finding {
    let f = findings(r, code);
    assert_eq!(f.len(), 1, "{r:#?}");
    f[0]
}

fn imports(r: &FileReport) -> Vec<String> {
    r.import_names()
}

/// A hand-built TorchScript archive: `data.pkl` holds an object of class `__torch__.<class>`
/// (so the loader calls its `__setstate__`), `constants.pkl` an empty tuple, `code/__torch__.py`
/// the given code.
fn archive(pickled_class: &str, code: &str) -> Vec<u8> {
    archive_with(pickled_class, &[("a/code/__torch__.py", code)], true)
}

fn archive_with(pickled_class: &str, code: &[(&str, &str)], constants: bool) -> Vec<u8> {
    let data = format!("\u{80}\u{2}c__torch__\n{pickled_class}\n)\u{81}}}b.");
    let data: Vec<u8> = data.chars().map(|c| c as u8).collect();
    let mut members = vec![Z::stored("a/data.pkl", &data)];
    for (name, text) in code {
        members.push(Z::deflated(name, text.as_bytes()));
    }
    if constants {
        members.push(Z::stored("a/constants.pkl", b"\x80\x02)."));
    }
    members.push(Z::stored("a/version", b"3\n"));
    zip(&members)
}

// ---- real torch archives (issue 9: no false rejection) ----

#[test]
fn real_scripted_and_traced_archives_are_safe() {
    for name in
        ["scripted_lists.pt", "traced.pt", "extra_files.pt", "setstate_benign.pt", "class_state.pt", "quantized.pt"]
    {
        let r = scan(fixture(name));
        assert_eq!(r.format, "pytorch", "{name}");
        assert_eq!(r.verdict, Verdict::Safe, "{name}: {r:#?}");
        assert!(r.findings.is_empty(), "{name}: {:#?}", r.findings);
    }
}

#[test]
fn list_attributes_and_debug_info_use_the_data_builders_which_are_allowed() {
    let r = scan(fixture("scripted_lists.pt"));
    let names = imports(&r);
    for builder in ["build_intlist", "build_doublelist", "build_boollist", "build_tensorlist", "restore_type_tag"] {
        assert!(names.contains(&format!("torch.jit._pickle.{builder}")), "{names:?}");
    }
    // the debug info (`*.debug_pkl`) is read too, and holds the builders
    assert!(r.imports.iter().any(|i| i.member.as_deref().is_some_and(|m| m.ends_with(".debug_pkl"))));
    // `__torch__` names are the archive's own classes: listed, not judged as Python imports
    assert!(names.contains(&"__torch__.Lists".to_string()), "{names:?}");
    assert!(findings(&r, "pickle-import-unknown").is_empty());
}

#[test]
fn quantized_archive_custom_classes_of_torch_are_known() {
    let r = scan(fixture("quantized.pt"));
    assert!(imports(&r).iter().any(|n| n == "__torch__.torch.classes.quantized.LinearPackedParamsBase"));
    assert_eq!(r.verdict, Verdict::Safe, "{r:#?}");
}

#[test]
fn without_constants_pkl_torch_load_unpickles_in_python_so_torch_names_are_unknown() {
    // torch.load hands an archive to torch.jit.load only when it has constants.pkl; this one
    // is unpickled by Python, whose find_class would import a module called `__torch__`
    let r = scan(fixture("no_constants.pt"));
    assert_eq!(r.verdict, Verdict::Suspicious, "{r:#?}");
    assert!(only(&r, "pickle-import-unknown").message.contains("__torch__.Stateful"));
}

#[test]
fn plain_pickles_keep_the_lists_judgement() {
    let pickle = |module: &str, name: &str| {
        let mut p = b"\x80\x02c".to_vec();
        p.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
        p.extend_from_slice(b")R.");
        scan(p)
    };
    assert_eq!(pickle("__torch__", "M").verdict, Verdict::Suspicious);
    for b in [
        "build_intlist",
        "build_tensorlist",
        "build_doublelist",
        "build_boollist",
        "build_tensor_from_id",
        "restore_type_tag",
    ] {
        let r = pickle("torch.jit._pickle", b);
        assert!(r.findings.iter().all(|f| !f.code.starts_with("pickle-import")), "{b}: {r:#?}");
    }
    // the rest of torch.jit stays denied
    assert_eq!(pickle("torch.jit.unsupported_tensor_ops", "execWrapper").verdict, Verdict::Dangerous);
    assert_eq!(pickle("torch.jit._pickle", "load").verdict, Verdict::Dangerous);
    assert_eq!(pickle("torch.jit", "load").verdict, Verdict::Dangerous);
    assert_eq!(pickle("torch.jit._pickle", "build_intlist.__globals__").verdict, Verdict::Dangerous);
}

// ---- code that runs at load (issue 7) ----

#[test]
fn setstate_reaching_a_file_op_is_dangerous_and_names_the_chain() {
    let r = scan(fixture("setstate_from_file.pt"));
    assert_eq!(r.verdict, Verdict::Dangerous);
    let f = only(&r, "torchscript-op-at-load");
    assert_eq!(f.evidence.as_deref(), Some("__torch__.ReadsAtLoad.helper: torch.from_file(p, False, 4)"));
    assert!(f.message.contains("aten::from_file"), "{}", f.message);
    assert!(f.message.contains("torch.jit.load calls __torch__.ReadsAtLoad.__setstate__"), "{}", f.message);
    assert!(f.message.contains("__torch__.ReadsAtLoad.helper"), "{}", f.message);
    assert_eq!(f.member.as_deref(), Some("setstate_from_file/code/__torch__.py"));
}

#[test]
fn tampered_archives_whose_payload_runs_at_load_are_dangerous() {
    // make_torchscript.py proves with real torch that each of these writes its marker on load
    for (name, evidence) in [
        (
            "tampered_setstate.pt",
            "__torch__.Stateful.__setstate__: torch.save(1, \"/tmp/modelgate_torchscript_marker\")",
        ),
        (
            "tampered_getattr.pt",
            "__torch__.Stateful.__setstate__: getattr(torch, \"save\")(1, \"/tmp/modelgate_torchscript_marker\")",
        ),
        (
            "tampered_uppercase.pt",
            "__TORCH__.Stateful.__setstate__: torch.save(1, \"/tmp/modelgate_torchscript_marker\")",
        ),
        ("tampered_class_helper.pt", "__torch__.Counter.dump: torch.save(n, \"/tmp/modelgate_torchscript_marker\")"),
        (
            "tampered_default.pt",
            "__torch__.Stateful.forward (default arguments): torch.save(1, \"/tmp/modelgate_torchscript_marker\")",
        ),
        (
            "tampered_constant.pt",
            "__torch__.Stateful (class body): torch.save(1, \"/tmp/modelgate_torchscript_marker\")",
        ),
    ] {
        let r = scan(fixture(name));
        assert_eq!(r.verdict, Verdict::Dangerous, "{name}: {r:#?}");
        let f = only(&r, "torchscript-op-at-load");
        assert_eq!(f.evidence.as_deref(), Some(evidence), "{name}");
        assert!(f.message.contains("aten::save"), "{name}: {}", f.message);
    }
}

#[test]
fn file_ops_that_run_only_when_the_model_is_called_are_suspicious() {
    for (name, evidence) in [
        ("forward_save.pt", "__torch__.SavesInForward.forward: torch.save(x, \"/tmp/modelgate-forward-dump\")"),
        ("tampered_forward.pt", "__torch__.Stateful.forward: torch.save(1, \"/tmp/modelgate_torchscript_marker\")"),
        // Counter is not in data.pkl here: torch never calls its __setstate__ at load
        ("tampered_unpickled_class.pt", "__torch__.Counter.dump: torch.save(n, \"/tmp/modelgate_torchscript_marker\")"),
    ] {
        let r = scan(fixture(name));
        assert_eq!(r.verdict, Verdict::Suspicious, "{name}: {r:#?}");
        assert_eq!(only(&r, "torchscript-op-in-code").evidence.as_deref(), Some(evidence), "{name}");
    }
}

#[test]
fn unknown_custom_op_is_suspicious_and_says_why() {
    let r = scan(fixture("custom_op.pt"));
    assert_eq!(r.verdict, Verdict::Suspicious, "{r:#?}");
    let f = only(&r, "torchscript-custom-op");
    assert!(f.message.contains("my_ext::launch") && f.message.contains("native library"), "{}", f.message);
    assert_eq!(f.evidence.as_deref(), Some("__torch__.Stateful.forward: ops.my_ext.launch(x)"));
}

// ---- hand-built archives, one rule at a time ----

const M_HEAD: &str = "class M(Module):\n  __parameters__ = []\n  __buffers__ = []\n  training : bool\n";

fn verdict_of(code: &str) -> (Verdict, Vec<&'static str>) {
    let r = scan(archive("M", code));
    (r.verdict, r.findings.iter().map(|f| f.code).collect())
}

#[test]
fn reachability_from_setstate() {
    let setstate = "  def __setstate__(self: __torch__.M, state: Tuple[int]) -> NoneType:\n";
    // a module attribute called as a module runs its forward
    let module_call = format!(
        "{M_HEAD}  sub : __torch__.Sub\n{setstate}    _0 = self.sub(1)\n    return None\n\
         class Sub(Module):\n  def forward(self: __torch__.Sub, x: int) -> int:\n    torch.save(x, \"/p\")\n    return x\n"
    );
    assert_eq!(verdict_of(&module_call), (Verdict::Dangerous, vec!["torchscript-op-at-load"]));
    // operators on objects run their dunder methods
    let dunder = format!(
        "{M_HEAD}{setstate}    _k = __torch__.K.__new__(__torch__.K)\n    _0 = _k + 1\n    return None\n\
         class K:\n  def __add__(self: __torch__.K, o: int) -> int:\n    _1 = torch.from_file(\"/etc/passwd\", False, 1)\n    return o\n"
    );
    assert_eq!(verdict_of(&dunder).0, Verdict::Dangerous);
    // a free function, called by its qualified name, and a function run by fork
    let free = format!(
        "{M_HEAD}{setstate}    fut = fork(__torch__.helper, 1)\n    return None\n\
         def helper(x: int) -> int:\n  ops.aten.save(x, \"/p\")\n  return x\n"
    );
    assert_eq!(verdict_of(&free).0, Verdict::Dangerous);
    // a nested function is part of its method
    let nested = format!(
        "{M_HEAD}{setstate}    def inner(y: int) -> int:\n      torch.save(y, \"/p\")\n      return y\n    return None\n"
    );
    assert_eq!(verdict_of(&nested).0, Verdict::Dangerous);
    // a class constructed in __setstate__ runs its __init__
    let init = format!(
        "{M_HEAD}{setstate}    _k = __torch__.K.__new__(__torch__.K)\n    _0 = (_k).__init__()\n    return None\n\
         class K:\n  def __init__(self: __torch__.K) -> NoneType:\n    torch.save(1, \"/p\")\n    return None\n"
    );
    assert_eq!(verdict_of(&init).0, Verdict::Dangerous);
    // the same call outside load time: only suspicious
    let unrelated = format!(
        "{M_HEAD}{setstate}    return None\n  def forward(self: __torch__.M, x: int) -> int:\n    torch.save(x, \"/p\")\n    return x\n"
    );
    assert_eq!(verdict_of(&unrelated), (Verdict::Suspicious, vec!["torchscript-op-in-code"]));
    // __setstate__ of a class that is not pickled is not load time either
    let other = "class M(Module):\n  training : bool\nclass Other:\n  def __setstate__(self: __torch__.Other, s: int) -> NoneType:\n    \
                 torch.save(1, \"/p\")\n    return None\n";
    assert_eq!(verdict_of(other).0, Verdict::Suspicious);
}

#[test]
fn network_ops_and_classes() {
    let setstate = "  def __setstate__(self: __torch__.M, state: int) -> NoneType:\n";
    let rpc =
        format!("{M_HEAD}{setstate}    fut = ops.prim.rpc_async(\"worker\", __torch__.f, (1,))\n    return None\n");
    assert_eq!(verdict_of(&rpc).0, Verdict::Dangerous);
    let collective = format!(
        "{M_HEAD}  def forward(self: __torch__.M, x: Tensor) -> Tensor:\n    _w = ops.c10d.barrier(x)\n    return x\n"
    );
    let (v, codes) = verdict_of(&collective);
    assert_eq!((v, codes), (Verdict::Suspicious, vec!["torchscript-op-in-code"]));
    let store = format!(
        "{M_HEAD}{setstate}    s = __torch__.torch.classes.dist_c10d.FileStore(\"/tmp/store\", 1)\n    return None\n"
    );
    assert_eq!(verdict_of(&store).0, Verdict::Dangerous);
}

#[test]
fn custom_classes_need_a_library() {
    // in the pickle: torch restores it with the library's C++ __setstate__
    let data = b"\x80\x02c__torch__.torch.classes.evil_ns\nThing\n)\x81}b.".to_vec();
    let r = scan(zip(&[
        Z::stored("a/data.pkl", &data),
        Z::stored("a/constants.pkl", b"\x80\x02)."),
        Z::stored("a/code/__torch__.py", b""),
    ]));
    let f = only(&r, "torchscript-custom-class");
    assert!(f.message.contains("torch.classes.evil_ns.Thing"), "{}", f.message);
    assert_eq!(f.member.as_deref(), Some("a/data.pkl"));
    // torch's own custom classes are known
    let data = b"\x80\x02c__torch__.torch.classes.quantized\nLinearPackedParamsBase\n)\x81}b.".to_vec();
    let r = scan(zip(&[Z::stored("a/data.pkl", &data), Z::stored("a/constants.pkl", b"\x80\x02).")]));
    assert_eq!(r.verdict, Verdict::Safe, "{r:#?}");
    // in a type annotation of the code
    let (v, codes) = verdict_of(&format!("{M_HEAD}  thing : __torch__.torch.classes.evil_ns.Thing\n"));
    assert_eq!((v, codes), (Verdict::Suspicious, vec!["torchscript-custom-class"]));
}

#[test]
fn ops_are_resolved_as_torchs_import_environment_resolves_them() {
    let fwd =
        |body: &str| format!("{M_HEAD}  def forward(self: __torch__.M, x: Tensor) -> Tensor:\n{body}    return x\n");
    for body in [
        "    _0 = torch.from_file(\"/etc/passwd\", True, 10)\n",
        "    _0 = ops.aten.from_file(\"/etc/passwd\")\n",
        "    _0 = torch.ops.aten.save(x, \"/p\")\n",
        "    f = torch.save\n    f(x, \"/p\")\n",
        "    _0 = getattr(getattr(ops, \"aten\"), \"save\")(x, \"/p\")\n",
        "    _0 = getattr(torch, \"\\163ave\")(x, \"/p\")\n",
        "    _0 = [torch.save(x, \"/p\") for _i in range(1)]\n",
        "    if torch.eq(1, 1):\n      _0 = torch.save(x, \"/p\")\n",
        "    _0 = torch.save(x, \"/p\") # torch.add\n",
    ] {
        let (v, codes) = verdict_of(&fwd(body));
        assert_eq!((v, codes), (Verdict::Suspicious, vec!["torchscript-op-in-code"]), "{body}");
    }
    // names that are no risky op, or text that is no code
    for body in [
        "    _0 = torch.add(x, 1)\n",
        "    _0 = x.save(\"/p\")\n",
        "    _0 = \"torch.save(x, '/p')\"\n",
        "    # torch.save(x, \"/p\")\n",
        "    _0 = ops.quantized.linear_prepack(x, None)\n",
    ] {
        assert_eq!(verdict_of(&fwd(body)).0, Verdict::Safe, "{body}");
    }
}

#[test]
fn load_time_expressions_outside_setstate() {
    let default = format!("{M_HEAD}  def forward(self: __torch__.M, x: Tensor, p: Tensor=torch.from_file(\"/etc/passwd\")) -> Tensor:\n    return x\n");
    assert_eq!(verdict_of(&default).0, Verdict::Dangerous);
    let constant = format!("{M_HEAD}  K : Final[int] = len([torch.save(1, \"/p\")])\n");
    assert_eq!(verdict_of(&constant).0, Verdict::Dangerous);
    let nested_default =
        format!("{M_HEAD}  def forward(self: __torch__.M, x: Tensor) -> Tensor:\n    def g(y: int=len([torch.save(1, \"/p\")])) -> int:\n      return y\n    return x\n");
    assert_eq!(verdict_of(&nested_default).0, Verdict::Dangerous);
}

#[test]
fn code_that_does_not_parse_is_an_error_and_danger_still_wins() {
    let r = scan(archive("M", "class M(Module):\n  def f(self) -> int:\n    return $\n"));
    assert_eq!(r.verdict, Verdict::Error);
    let f = only(&r, "torchscript-code-unreadable");
    assert!(f.message.contains("line 3"), "{}", f.message);
    // `# type:` is a token, not a comment: a stray one in a body does not parse for torch either
    let r = scan(archive("M", &format!("{M_HEAD}  def forward(self, x):\n    # type: ignore\n    return x\n")));
    assert_eq!(r.verdict, Verdict::Error, "{r:#?}");
    let r = scan(archive_with(
        "M",
        &[
            ("a/code/__torch__.py", "class M(Module):\n  def __setstate__(self, s: int) -> NoneType:\n    torch.save(1, \"/p\")\n    return None\n"),
            ("a/code/__torch__/bad.py", "class (\n"),
        ],
        true,
    ));
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    assert!(!findings(&r, "torchscript-code-unreadable").is_empty());
}

#[test]
fn unreadable_pickles_make_every_setstate_load_time() {
    // data.pkl is not a pickle, so the pickled classes are unknown: every __setstate__ counts
    let code = "class Other:\n  def __setstate__(self: __torch__.Other, s: int) -> NoneType:\n    torch.save(1, \"/p\")\n    return None\n";
    let r = scan(zip(&[
        Z::stored("a/data.pkl", b"not a pickle"),
        Z::stored("a/constants.pkl", b"\x80\x02)."),
        Z::deflated("a/code/__torch__.py", code.as_bytes()),
    ]));
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
}

#[test]
fn code_folders_of_other_zips_are_not_torchscript() {
    let python = b"from os import path\nprint(path.join('a', 'b'))\n";
    // a zipped Python project, and a torch.save zip (no constants.pkl: torch.jit.load cannot load it)
    for z in [
        zip(&[Z::stored("proj/code/main.py", python), Z::stored("proj/README", b"x")]),
        zip(&[Z::stored("a/data.pkl", b"\x80\x02}."), Z::stored("a/code/main.py", python)]),
        zip(&[
            Z::stored("a/data.pkl", b"\x80\x02}."),
            Z::stored("a/constants.pkl", b"\x80\x02)."),
            Z::stored("a/extra/code/main.py", python),
        ]),
    ] {
        let r = scan(z);
        assert!(r.findings.iter().all(|f| !f.code.starts_with("torchscript")), "{r:#?}");
        assert_ne!(r.verdict, Verdict::Error, "{r:#?}");
    }
    // beside constants.pkl, the same file is TorchScript code that torch would fail to compile
    let r = scan(zip(&[Z::stored("a/constants.pkl", b"\x80\x02)."), Z::stored("a/code/main.py", python)]));
    assert_eq!(only(&r, "torchscript-code-unreadable").member.as_deref(), Some("a/code/main.py"));
}

#[test]
fn nested_archive_keeps_the_torchscript_context() {
    let outer = zip(&[
        Z::stored("models/lists.pt", &fixture("scripted_lists.pt")),
        Z::stored("models/tampered.pt", &fixture("tampered_setstate.pt")),
    ]);
    let r = scan(outer);
    assert_eq!(r.verdict, Verdict::Dangerous, "{r:#?}");
    assert!(findings(&r, "pickle-import-unknown").is_empty(), "{r:#?}");
    let f = only(&r, "torchscript-op-at-load");
    assert_eq!(f.member.as_deref(), Some("models/tampered.pt!tampered_setstate/code/__torch__.py"));
}

#[test]
fn archives_never_panic() {
    formats_common::never_panics_at(&fixture("tampered_class_helper.pt"), 80);
    formats_common::never_panics_at(&fixture("setstate_from_file.pt"), 80);
}

#[test]
fn hostile_code_stays_bounded() {
    let deep = format!("{M_HEAD}  def forward(self, x):\n    return {}x{}\n", "(".repeat(100_000), ")".repeat(100_000));
    let (v, codes) = verdict_of(&deep);
    assert_eq!((v, codes), (Verdict::Error, vec!["torchscript-code-unreadable"]));
    let chain = format!("{M_HEAD}  def forward(self, x):\n    return x{}\n", ".a".repeat(200_000));
    assert_eq!(verdict_of(&chain).0, Verdict::Error);
    let calls = format!("{M_HEAD}  def forward(self, x):\n    return x{}\n", "(1)".repeat(200_000));
    assert_eq!(verdict_of(&calls).0, Verdict::Error);
    // many classes and calls: judged, findings capped
    let mut many = String::new();
    for i in 0..3000 {
        many.push_str(&format!(
            "class C{i}:\n  def __setstate__(self, s: int) -> NoneType:\n    torch.save(s, \"/p{i}\")\n    return None\n"
        ));
    }
    let r = scan(archive_with("C1", &[("a/code/__torch__.py", &many)], true));
    assert_eq!(r.verdict, Verdict::Dangerous);
    assert!(r.findings.len() <= 202, "{}", r.findings.len());
    // token soup of every token kind
    let soup: String = (0..20_000)
        .map(|i| {
            ["def", "(", ")", ":", "\n", "  ", "x", "'s'", "1.5", "class", "->", "[", "]", "if", ".", ","][i * 7 % 16]
        })
        .collect();
    let _ = verdict_of(&soup);
}

/// Loads every committed fixture with real torch and checks that each archive whose payload
/// ran while loading is dangerous, and that no archive modelgate calls safe ran one.
/// Needs Debian's python3-torch (`.ci/run` installs it); skipped without it, unless CI=true.
#[test]
fn real_torch_agrees() {
    let has_torch = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import torch"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has_torch {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true needs python3-torch (.ci/run installs it)");
        eprintln!("skipped: /usr/bin/python3 cannot import torch (apt-get install python3-torch)");
        return;
    }
    let dir = format!("{}/tests/fixtures/torchscript", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(format!("{dir}/make_torchscript.py"))
        .arg("--check")
        .output()
        .expect("run /usr/bin/python3 with torch");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut checked = 0;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(marker), Some(load)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let r = scan(fixture(name));
        if marker == "marker=yes" {
            assert_eq!(r.verdict, Verdict::Dangerous, "{name} ran its payload at load: {r:#?}");
        } else if load == "load=ok" {
            // loaded cleanly without running a payload (a failed load may have run code first)
            assert_ne!(r.verdict, Verdict::Dangerous, "{name} ran nothing at load: {r:#?}");
        }
        checked += 1;
    }
    assert!(checked >= 15, "{text}");
}
