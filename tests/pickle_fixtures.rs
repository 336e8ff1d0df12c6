//! One test per pickle technique of THREATS.md (1-11, 27-28): verdict, finding code and evidence.

mod common;

use common::fixtures::{self as fx, CMD};
use common::{assert_dangerous, dump, find, must, scan, scan_with, P};
use modelgate::engine::ScanOptions;
use modelgate::finding::Severity;

// ---- 1. direct calls ----

#[test]
fn t01_direct_call_os_system() {
    let r = scan(&fx::p0_os_system());
    assert_dangerous(&r, "os.system('echo pwned')");
    let f = must(&r, "pickle-import-dangerous");
    assert_eq!(f.offset, Some(0));
    assert_eq!(r.format, "pickle");
}

#[test]
fn t01_direct_call_family() {
    for (m, n) in [
        ("posix", "system"),
        ("nt", "system"),
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("builtins", "compile"),
        ("builtins", "open"),
        ("builtins", "getattr"),
        ("builtins", "__import__"),
        ("__builtin__", "eval"),
        ("subprocess", "check_output"),
        ("subprocess", "Popen"),
        ("runpy", "_run_code"),
        ("pty", "spawn"),
        ("webbrowser", "open"),
        ("socket", "create_connection"),
        ("shutil", "rmtree"),
        ("importlib", "import_module"),
    ] {
        let r = scan(&P::proto(2).call1(m, n, CMD).stop().bytes());
        let shown = if m == "__builtin__" { "builtins" } else { m };
        assert_dangerous(&r, &format!("{shown}.{n}('echo pwned')"));
        assert!(find(&r, "pickle-import-dangerous").is_some(), "{m}.{n}: {}", dump(&r));
    }
}

// ---- 2. protocol variants, INST/OBJ/NEWOBJ/NEWOBJ_EX/BUILD ----

#[test]
fn t02_every_protocol() {
    for (name, bytes) in fx::proto_variants() {
        let r = scan(&bytes);
        let who = if name == "p3" { "posix.system" } else { "os.system" };
        assert_dangerous(&r, &format!("{who}('echo pwned')"));
        assert!(find(&r, "pickle-malformed").is_none(), "{name}: {}", dump(&r));
    }
}

#[test]
fn t02_inst_and_obj_call() {
    for bytes in [fx::inst(), fx::obj()] {
        let r = scan(&bytes);
        assert_dangerous(&r, "os.system('echo pwned')");
    }
    let r = scan(&fx::inst());
    assert_eq!(r.imports[0].opcode, "INST");
}

#[test]
fn t02_newobj_and_newobj_ex() {
    let r = scan(&fx::newobj());
    assert_dangerous(&r, "subprocess.Popen.__new__(subprocess.Popen, ['echo', 'pwned'])");
    let r = scan(&fx::newobj_ex());
    assert_dangerous(&r, "subprocess.Popen.__new__(subprocess.Popen, 'echo pwned', **{'shell': True})");
}

#[test]
fn t02_build_calls_setstate() {
    let r = scan(&fx::build_setstate());
    assert_dangerous(&r, "os.system('echo pwned')");
    let unknown = must(&r, "pickle-import-unknown");
    assert_eq!(
        unknown.evidence.as_deref(),
        Some("mylib.Thing.__new__(mylib.Thing).__setstate__({'cmd': os.system('echo pwned')})")
    );
}

#[test]
fn t02_user_class_is_suspicious_not_dangerous() {
    let r = scan(&fx::user_class());
    assert_eq!(r.verdict.as_str(), "suspicious", "{}", dump(&r));
    assert!(must(&r, "pickle-import-unknown").message.contains("__main__.Net"));
}

// ---- 3. STACK_GLOBAL operands ----

#[test]
fn t03_stack_global_operand_sources() {
    for (name, bytes) in fx::stack_global_variants() {
        let r = scan(&bytes);
        assert_dangerous(&r, "os.system('echo pwned')");
        assert!(
            find(&r, "pickle-dynamic-global").is_none(),
            "{name}: memo/STRING operands are constants\n{}",
            dump(&r)
        );
        assert!(find(&r, "pickle-malformed").is_none(), "{name}: {}", dump(&r));
    }
}

#[test]
fn t03_non_constant_stack_global() {
    let r = scan(&fx::dynamic_stack_global());
    let f = must(&r, "pickle-dynamic-global");
    assert_eq!(f.severity, Severity::Dangerous);
    assert_eq!(f.evidence.as_deref(), Some("STACK_GLOBAL(builtins.str('os'), 'system')"));
    let r = scan(&fx::int_stack_global());
    assert_eq!(must(&r, "pickle-dynamic-global").evidence.as_deref(), Some("STACK_GLOBAL(42, 'os')"));
    assert_eq!(r.verdict.as_str(), "dangerous");
}

// ---- 4. dotted names ----

#[test]
fn t04_dotted_names_walk_to_dangerous_objects() {
    for (m, n) in [
        ("pathlib", "os.system"),
        ("collections", "OrderedDict.__init__.__globals__"),
        ("torch._utils", "_rebuild_tensor.__globals__"),
        ("numpy", "core.multiarray.builtins.eval"),
    ] {
        let r = scan(&fx::dotted(m, n));
        assert_dangerous(&r, &format!("{m}.{n}('echo pwned')"));
    }
    // a dotted walk to an allowlisted name stays safe
    let r = scan(&P::proto(4).str("torch").str("_utils._rebuild_tensor_v2").stack_global().stop().bytes());
    assert_eq!(r.verdict.as_str(), "safe", "{}", dump(&r));
}

// ---- 5. submodules ----

#[test]
fn t05_submodules_of_dangerous_modules() {
    for (m, n) in [
        ("asyncio.unix_events", "_UnixSubprocessTransport._start"),
        ("subprocess", "run"),
        ("pip._internal.cli.main", "main"),
        ("os.path", "join"),
        ("torch.utils.bottleneck.__main__", "run_cprofile"),
    ] {
        assert_dangerous(&scan(&fx::dotted(m, n)), &format!("{m}.{n}("));
    }
}

// ---- 6. gadgets; everything else is at least suspicious ----

#[test]
fn t06_gadgets() {
    for path in [
        "pip.main",
        "pkgutil.resolve_name",
        "code.InteractiveInterpreter.runcode",
        "doctest.debug_script",
        "cProfile.run",
        "profile.run",
        "pdb.run",
        "timeit.timeit",
        "trace.Trace.run",
        "ensurepip._run_pip",
        "imaplib.IMAP4_stream",
        "uuid._get_command_stdout",
        "_osx_support._read_output",
        "_aix_support._read_cmd_output",
        "_pyrepl.pager.pipe_pager",
        "idlelib.pyshell.ModifiedInterpreter.runcode",
        "lib2to3.pgen2.grammar.Grammar.loads",
        "test.support.script_helper.assert_python_ok",
        "logging.FileHandler",
        "_io.FileIO",
        "distutils.file_util.write_file",
        "multiprocessing.util.spawnv_passfds",
        "ctypes.CDLL",
        "torch.utils.collect_env.run",
        "torch.serialization.load",
        "torch.hub.load",
        "torch._inductor.codecache.compile_file",
        "torch.jit.unsupported_tensor_ops.execWrapper",
        "torch.utils._config_module.ConfigModule.load_config",
        "numpy.testing._private.utils.runstring",
        "numpy.f2py.crackfortran.getlincoef",
        "requests.api.get",
        "urllib.request.urlopen",
        "aiohttp.client.ClientSession",
    ] {
        let (m, n) = path.split_once('.').unwrap();
        let r = scan(&fx::dotted(m, n));
        assert_eq!(r.verdict.as_str(), "dangerous", "{path}: {}", dump(&r));
        assert!(find(&r, "pickle-import-dangerous").is_some(), "{path}");
    }
    let r = scan(&fx::dotted("somelib.util", "helper"));
    assert_eq!(r.verdict.as_str(), "suspicious", "{}", dump(&r));
    assert_eq!(must(&r, "pickle-import-unknown").evidence.as_deref(), Some("somelib.util.helper('echo pwned')"));
}

// ---- 7. chains ----

#[test]
fn t07_chains_render_nested_calls() {
    assert_dangerous(
        &scan(&fx::chain_import_module()),
        "inspect.getattr_static(importlib.import_module('os'), 'system')('echo pwned')",
    );
    assert_dangerous(
        &scan(&fx::chain_marshal()),
        "types.FunctionType(marshal.loads(base64.b64decode('4wAAAAAAAAAA')), {})()",
    );
    assert_dangerous(
        &scan(&fx::chain_partial()),
        "functools.partial(operator.methodcaller('system', 'echo pwned'), builtins.__import__('os'))",
    );
    assert_dangerous(&scan(&fx::chain_getattr()), "builtins.getattr(builtins.__import__('builtins'), 'eval')('1+1')");
}

// ---- 8. code objects ----

#[test]
fn t08_code_objects() {
    assert_dangerous(&scan(&fx::code_type()), "types.CodeType(0, 0, b'd\\x00S\\x00')");
    assert_dangerous(&scan(&fx::dill_function()), "dill._dill._create_function(dill._dill._create_code('code'), {})");
    let r = scan(&fx::cloudpickle_function());
    assert_dangerous(&r, "cloudpickle.cloudpickle.subimport('os')");
    assert_dangerous(&r, "cloudpickle.cloudpickle._make_function('x')");
}

// ---- 9. nested pickles ----

#[test]
fn t09_nested_raw_base64_hex() {
    for (enc, bytes) in
        [("raw", fx::nested_raw()), ("base64-encoded", fx::nested_base64()), ("hex-encoded", fx::nested_hex())]
    {
        let r = scan(&bytes);
        let f = must(&r, "pickle-embedded");
        assert_eq!(f.severity, Severity::Dangerous, "{enc}: {}", dump(&r));
        assert!(f.message.contains(enc), "{}", f.message);
        assert_eq!(f.evidence.as_deref(), Some("builtins.print('pwned')"));
        let inner = r.imports.iter().find(|i| i.full_name() == "builtins.print").expect("inner import");
        assert!(inner.member.as_deref().unwrap().starts_with("pickle@"), "{:?}", inner.member);
        assert_eq!(r.verdict.as_str(), "dangerous");
    }
}

#[test]
fn t09_nested_data_only_is_suspicious() {
    let r = scan(&fx::nested_data_only());
    assert_eq!(must(&r, "pickle-embedded").severity, Severity::Suspicious);
    assert_eq!(r.verdict.as_str(), "suspicious", "{}", dump(&r));
}

#[test]
fn t09_trampolines_scan_their_argument() {
    let r = scan(&fx::trampoline_raw());
    assert_dangerous(&r, "pickle.loads(b'");
    assert!(r.imports.iter().any(|i| i.full_name() == "builtins.print" && i.member.is_some()), "{}", dump(&r));
    assert!(find(&r, "pickle-embedded").is_none(), "a loader argument is not 'hidden'");
    // headerless protocol-0 inner pickles, raw, latin-1 encoded and base64 through BytesIO
    for bytes in [fx::trampoline_p0(), fx::trampoline_codecs(), fx::trampoline_base64_bytesio()] {
        let r = scan(&bytes);
        let inner = r.imports.iter().find(|i| i.full_name() == "os.system").unwrap_or_else(|| panic!("{}", dump(&r)));
        assert_eq!(inner.evidence.as_deref(), Some("os.system('echo inner')"));
        assert!(inner.member.as_deref().unwrap().starts_with("pickle@"));
        assert_eq!(r.verdict.as_str(), "dangerous");
    }
}

#[test]
fn t09_pickled_storage_is_safe_and_dynamic_argument_is_dangerous() {
    let r = scan(&fx::trampoline_storage_safe());
    assert_eq!(r.verdict.as_str(), "safe", "{}", dump(&r));
    let r = scan(&fx::trampoline_dynamic());
    let f = must(&r, "pickle-nested-dynamic");
    assert_eq!(f.evidence.as_deref(), Some("mylib.fetch('x')"));
    assert_eq!(r.verdict.as_str(), "dangerous");
}

#[test]
fn t09_benign_strings_are_not_pickles() {
    let r = scan(&fx::benign_strings());
    assert_eq!(r.verdict.as_str(), "safe", "{}", dump(&r));
    assert!(r.findings.is_empty(), "{}", dump(&r));
}

#[test]
fn t09_nested_depth_is_limited() {
    let mut inner = fx::inner_print();
    for _ in 0..12 {
        inner = P::proto(4).bin(&inner).stop().bytes();
    }
    let r = scan(&inner);
    assert!(find(&r, "pickle-budget-exceeded").is_some(), "{}", dump(&r));
}

// ---- 10. broken streams ----

#[test]
fn t10_payload_then_invalid_opcode() {
    let r = scan(&fx::broken_invalid_opcode());
    assert_dangerous(&r, "os.system('echo pwned')");
    let m = must(&r, "pickle-malformed");
    assert_eq!(m.severity, Severity::Dangerous);
    assert!(m.message.contains("invalid load key, '\\xff'"), "{}", m.message);
}

#[test]
fn t10_payload_then_no_stop_and_truncated_unicode() {
    let r = scan(&fx::broken_no_stop());
    assert_dangerous(&r, "os.system('echo pwned')");
    assert!(must(&r, "pickle-malformed").message.contains("no STOP"));
    // headerless: still a pickle because it imported before failing
    let r = scan(&fx::broken_truncated_unicode());
    assert_eq!(r.verdict.as_str(), "dangerous", "{}", dump(&r));
    assert!(must(&r, "pickle-malformed").message.contains("truncated"));
    assert!(r.imports.iter().any(|i| i.full_name() == "builtins.exec"));
}

#[test]
fn t10_garbage_that_never_imports_is_not_a_pickle() {
    // starts with an opcode, fails before any import: unsupported, no findings
    let r = scan(b"cmod\n\xf8\n");
    assert_eq!(r.verdict.as_str(), "unsupported", "{}", dump(&r));
    assert!(r.findings.is_empty());
    let r = scan(b"\x89PNG\r\n\x1a\n");
    assert_eq!(r.verdict.as_str(), "unsupported", "{}", dump(&r));
    // a word list read as protocol 0 imports cat.dog and fails: nothing ran, no pickle
    let r = scan(b"cat\ndog\nfish\nbird\n");
    assert_eq!(r.verdict.as_str(), "unsupported", "{}", dump(&r));
    let r = scan(b"config = 1\nvalue = 2\n");
    assert_eq!(r.verdict.as_str(), "unsupported", "{}", dump(&r));
    // but a denylisted import before the failure runs code at import time
    let r = scan(b"ctkinter.__main__\nx\nfish\n");
    assert_eq!(r.verdict.as_str(), "dangerous", "{}", dump(&r));
    // with a header the stream is a pickle, and a malformed pickle is never safe
    let r = scan(b"\x80\x04N\x95");
    assert_eq!(must(&r, "pickle-malformed").severity, Severity::Dangerous);
    // a frame longer than the data: the C unpickler fails, the pure-Python one reads on
    let r = scan(b"\x80\x04\x95\xff\xff\x00\x00\x00\x00\x00\x00N.");
    assert_eq!(must(&r, "pickle-loader-divergence").severity, Severity::Dangerous);
}

// ---- 11. several pickles, legacy torch ----

#[test]
fn t11_second_stream_is_scanned() {
    let r = scan(&fx::two_streams());
    assert_dangerous(&r, "builtins.eval('1+1')");
    let eval = r.imports.iter().find(|i| i.name == "eval").unwrap();
    assert!(eval.offset > 10);
}

#[test]
fn t11_legacy_torch() {
    let r = scan(&fx::legacy_torch(None));
    assert_eq!(r.verdict.as_str(), "safe", "{}", dump(&r));
    assert_eq!(r.format, "pytorch-legacy");
    let t = must(&r, "pickle-trailing-data");
    assert_eq!(t.severity, Severity::Info);
    for i in [0, 4] {
        let r = scan(&fx::legacy_torch(Some(i)));
        assert_dangerous(&r, "os.system('echo pwned')");
    }
}

#[test]
fn t11_safe_state_dict() {
    let r = scan(&fx::safe_state_dict());
    assert_eq!(r.verdict.as_str(), "safe", "{}", dump(&r));
    let storage = r.imports.iter().find(|i| i.name == "FloatStorage").unwrap();
    assert_eq!(storage.evidence.as_deref(), Some("persistent_load(('storage', torch.FloatStorage, '0', 'cpu', 6))"));
}

// ---- other parser findings ----

#[test]
fn memo_key_error_ext_and_module_override() {
    let r = scan(&fx::missing_memo());
    assert_dangerous(&r, "os.system('echo pwned')");
    assert!(must(&r, "pickle-malformed").message.contains("memo value not found at index 3"));
    let r = scan(&fx::ext1());
    assert_eq!(must(&r, "pickle-extension-code").evidence.as_deref(), Some("EXT1 7"));
    let r = scan(&fx::module_override());
    let f = must(&r, "pickle-global-mutation");
    assert_eq!(f.evidence.as_deref(), Some("torch._utils.__setstate__({'_rebuild_tensor': 'builtins'})"));
    assert!(find(&r, "pickle-dynamic-global").is_some());
}

// ---- 27. errors never mask malice ----

#[test]
fn t27_dangerous_outranks_error() {
    // payload, then a budget runs out: the verdict stays dangerous
    let mut bytes = P::proto(4).call1_sg("os", "system", CMD).pop().bytes();
    bytes.extend(std::iter::repeat_n(b'N', 1000));
    bytes.push(b'.');
    let opts = ScanOptions { max_pickle_opcodes: 100, ..ScanOptions::default() };
    let r = scan_with(&bytes, &opts);
    assert_eq!(must(&r, "pickle-budget-exceeded").severity, Severity::Error);
    assert_dangerous(&r, "os.system('echo pwned')");
    // trailing garbage after a payload pickle
    let mut bytes = fx::p0_os_system();
    bytes.extend_from_slice(b"\x00\x01garbage");
    let r = scan(&bytes);
    assert_dangerous(&r, "os.system('echo pwned')");
    assert_eq!(must(&r, "pickle-trailing-data").severity, Severity::Info);
}

// ---- 28. resource exhaustion ----

#[test]
fn t28_memo_dup_expansion_is_bounded() {
    let bytes = fx::memo_expansion(200_000);
    let t = std::time::Instant::now();
    let r = scan(&bytes);
    assert_eq!(r.verdict.as_str(), "safe", "{}", dump(&r));
    assert!(t.elapsed().as_secs() < 20);
}

#[test]
fn t28_huge_declared_lengths() {
    let r = scan(&fx::huge_length());
    assert_dangerous(&r, "os.system('echo pwned')");
    assert!(must(&r, "pickle-malformed").message.contains("truncated"));
    // joblib's pure-Python unpickler reads a frame longer than the data; C fails
    let r = scan(&fx::huge_frame());
    assert_dangerous(&r, "os.system('echo pwned')");
    assert_eq!(must(&r, "pickle-loader-divergence").severity, Severity::Dangerous);
    assert!(r.findings.iter().all(|f| f.code != "pickle-frame-straddle"), "{}", dump(&r));
    // a LONG4 of 2 GiB declared is skipped, not allocated
    let r = scan(&P::proto(2).op(0x8b).raw(&0x7fff_ffffu32.to_le_bytes()).raw(b"xx").bytes());
    assert!(must(&r, "pickle-malformed").message.contains("truncated"));
}

#[test]
fn t28_millions_of_opcodes_end_in_a_budget_finding() {
    let mut bytes = vec![0x80, 4];
    for _ in 0..2_000_000 {
        bytes.extend_from_slice(b"N0");
    }
    bytes.push(b'.');
    let opts = ScanOptions { max_pickle_opcodes: 1_000_000, ..ScanOptions::default() };
    let r = scan_with(&bytes, &opts);
    let f = must(&r, "pickle-budget-exceeded");
    assert!(f.message.contains("1000000 opcodes"), "{}", f.message);
    assert_eq!(r.verdict.as_str(), "error");
    // values budget: a growing stack
    let mut bytes = vec![0x80, 4];
    bytes.extend(std::iter::repeat_n(b'N', 100_000));
    bytes.push(b'.');
    let opts = ScanOptions { max_pickle_values: 10_000, ..ScanOptions::default() };
    let r = scan_with(&bytes, &opts);
    assert!(must(&r, "pickle-budget-exceeded").message.contains("10000 values"));
}

#[test]
fn t28_protocol0_line_budget() {
    let mut bytes = b"S'".to_vec();
    bytes.extend(std::iter::repeat_n(b'a', 2 << 20));
    bytes.extend_from_slice(b"'\n0cos\nsystem\n.");
    let opts = ScanOptions { max_nested_pickle_bytes: 1 << 20, ..ScanOptions::default() };
    let r = scan_with(&bytes, &opts);
    assert_eq!(must(&r, "pickle-budget-exceeded").severity, Severity::Error, "{}", dump(&r));
}

// ---- 14. joblib ----

#[test]
fn t14_joblib_payload_after_array() {
    let r = scan(&fx::joblib(4, false, &[]));
    assert_eq!(r.format, "joblib");
    assert_dangerous(&r, "os.system('echo after array')");
    assert!(find(&r, "pickle-malformed").is_none(), "{}", dump(&r));
    // array bytes that look like opcodes are skipped, not parsed
    let r = scan(&fx::joblib(2, false, b"cos\nsystem\n\x00\x00\x00\x00\x00"));
    assert!(find(&r, "pickle-malformed").is_none(), "{}", dump(&r));
    assert_eq!(r.imports.iter().filter(|i| i.name == "system").count(), 1);
}

#[test]
fn t14_joblib_object_array_is_a_pickle() {
    let r = scan(&fx::joblib(2, true, &[]));
    assert_dangerous(&r, "os.system('echo from object array')");
    let ev: Vec<_> = r.imports.iter().filter(|i| i.name == "system").map(|i| i.evidence.clone().unwrap()).collect();
    assert_eq!(ev, ["os.system('echo from object array')", "os.system('echo after array')"]);
    assert!(find(&r, "pickle-malformed").is_none(), "{}", dump(&r));
}

#[test]
fn t14_joblib_payload_after_multi_gb_sparse_array() {
    use std::io::{Seek, SeekFrom, Write};
    let n: u64 = 400_000_000; // 3.2 GB of float64, never written: the file is sparse
    let (head, tail) = fx::joblib_parts(n, false);
    let mut tmp = tempfile::NamedTempFile::new().unwrap();
    tmp.write_all(&head).unwrap();
    tmp.seek(SeekFrom::Current((n * 8) as i64)).unwrap();
    tmp.write_all(&tail).unwrap();
    tmp.flush().unwrap();
    let t = std::time::Instant::now();
    let r = modelgate::engine::scan_path(tmp.path(), "model.joblib", &ScanOptions::default());
    assert!(t.elapsed().as_secs() < 10);
    assert_eq!(r.format, "joblib");
    assert_dangerous(&r, "os.system('echo after array')");
    // truncated array data is malformed
    let mut short = head.clone();
    short.extend_from_slice(&[0; 16]);
    let r = scan(&short);
    assert!(must(&r, "pickle-malformed").message.contains("joblib array data truncated"), "{}", dump(&r));
}

#[test]
fn performance_of_a_large_state_dict() {
    // ~1M opcodes in the shape of a torch data.pkl
    let mut p = P::proto(2).global("collections", "OrderedDict").empty_tuple().reduce().binput(0).mark();
    for i in 0..40_000u32 {
        p = p
            .str(&format!("layer{i}.weight"))
            .global("torch._utils", "_rebuild_tensor_v2")
            .mark()
            .mark()
            .str("storage")
            .global("torch", "FloatStorage")
            .str(&i.to_string())
            .str("cpu")
            .int(100)
            .tuple()
            .binpersid()
            .int(0)
            .int(10)
            .int(10)
            .tuple2()
            .int(10)
            .int(1)
            .tuple2()
            .op(0x89)
            .global("collections", "OrderedDict")
            .empty_tuple()
            .reduce()
            .tuple()
            .reduce();
    }
    let bytes = p.setitems().stop().bytes();
    let t = std::time::Instant::now();
    let r = scan(&bytes);
    let spent = t.elapsed();
    assert_eq!(r.verdict.as_str(), "safe", "{}", dump(&r));
    eprintln!("{} bytes scanned in {spent:?}", bytes.len());
    assert!(spent.as_secs() < 30);
}

#[test]
fn t28_repeated_imports_are_bounded() {
    let mut p = P::proto(2);
    for _ in 0..150_000 {
        p = p.global("collections", "OrderedDict").pop();
    }
    let bytes = p.call1("os", "system", CMD).stop().bytes();
    let r = scan(&bytes);
    assert_dangerous(&r, "os.system('echo pwned')");
    assert!(r.imports.len() <= 70_000, "{} import records", r.imports.len());
}
