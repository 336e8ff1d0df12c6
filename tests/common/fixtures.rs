//! Fixture pickles, one builder per technique of THREATS.md (harmless payloads only).
//! `all()` lists them for the robustness and differential tests.
#![allow(dead_code)]

use super::P;

pub const CMD: &str = "echo pwned";

/// `os.system('echo pwned')` in protocol 0 (text, no header).
pub fn p0_os_system() -> Vec<u8> {
    b"cos\nsystem\n(S'echo pwned'\ntR.".to_vec()
}

/// The same call in protocols 1 to 5, each written the way that protocol's pickler would.
pub fn proto_variants() -> Vec<(String, Vec<u8>)> {
    let mut v = vec![("p0".to_string(), p0_os_system())];
    v.push((
        "p1".into(),
        P::new().global("os", "system").mark().short_binstring(CMD.as_bytes()).tuple().reduce().stop().bytes(),
    ));
    v.push(("p2".into(), P::proto(2).global("os", "system").str(CMD).tuple1().reduce().stop().bytes()));
    v.push((
        "p3".into(),
        P::proto(3).global("posix", "system").binunicode(CMD.as_bytes()).tuple1().reduce().stop().bytes(),
    ));
    for p in [4u8, 5] {
        let body = P::new()
            .str("os")
            .memoize()
            .str("system")
            .memoize()
            .stack_global()
            .memoize()
            .str(CMD)
            .memoize()
            .tuple1()
            .memoize()
            .reduce()
            .memoize()
            .stop()
            .bytes();
        v.push((format!("p{p}"), P::proto(p).frame(body.len() as u64).raw(&body).bytes()));
    }
    v
}

/// INST: `(S'echo pwned'\nios\nsystem\n.`
pub fn inst() -> Vec<u8> {
    b"(S'echo pwned'\nios\nsystem\n.".to_vec()
}

/// OBJ: `(cos\nsystem\nS'echo pwned'\no.`
pub fn obj() -> Vec<u8> {
    b"(cos\nsystem\nS'echo pwned'\no.".to_vec()
}

/// NEWOBJ of subprocess.Popen.
pub fn newobj() -> Vec<u8> {
    P::proto(2)
        .global("subprocess", "Popen")
        .empty_list()
        .str("echo")
        .append()
        .str("pwned")
        .append()
        .tuple1()
        .newobj()
        .stop()
        .bytes()
}

/// NEWOBJ_EX of subprocess.Popen with keyword arguments.
pub fn newobj_ex() -> Vec<u8> {
    P::proto(4)
        .str("subprocess")
        .str("Popen")
        .stack_global()
        .str(CMD)
        .tuple1()
        .empty_dict()
        .str("shell")
        .op(0x88)
        .setitem()
        .newobj_ex()
        .stop()
        .bytes()
}

/// BUILD on an instance: `__setstate__` receives a state that itself runs a call.
pub fn build_setstate() -> Vec<u8> {
    P::proto(2)
        .global("mylib", "Thing")
        .empty_tuple()
        .newobj()
        .empty_dict()
        .str("cmd")
        .call1("os", "system", CMD)
        .setitem()
        .build()
        .stop()
        .bytes()
}

/// A user class rebuilt with NEWOBJ + BUILD of plain data (suspicious, not dangerous).
pub fn user_class() -> Vec<u8> {
    P::proto(2)
        .global("__main__", "Net")
        .empty_tuple()
        .newobj()
        .empty_dict()
        .str("layers")
        .int(3)
        .setitem()
        .build()
        .stop()
        .bytes()
}

/// STACK_GLOBAL operands pushed with STRING, BINSTRING, SHORT_BINSTRING and fetched from the memo.
pub fn stack_global_variants() -> Vec<(String, Vec<u8>)> {
    let tail = |p: P| p.stack_global().str(CMD).tuple1().reduce().stop().bytes();
    vec![
        ("STRING".into(), tail(P::proto(4).string("os").string("system"))),
        ("BINSTRING".into(), tail(P::proto(4).binstring(b"os").binstring(b"system"))),
        ("SHORT_BINSTRING".into(), tail(P::proto(4).short_binstring(b"os").short_binstring(b"system"))),
        ("UNICODE".into(), tail(P::proto(4).unicode_line("os").unicode_line("sys\\u0074em"))),
        (
            "memo".into(),
            tail(
                P::new().str("os").binput(7).pop().str("system").binput(9).pop().str("junk").pop().binget(7).binget(9),
            ),
        ),
        (
            "memo-text".into(),
            tail(
                P::new()
                    .unicode_line("os")
                    .raw(b"p2\n")
                    .pop()
                    .unicode_line("system")
                    .raw(b"p3\n")
                    .pop()
                    .raw(b"g2\ng3\n"),
            ),
        ),
    ]
}

/// STACK_GLOBAL whose module is the result of a call (`builtins.str('os')`).
pub fn dynamic_stack_global() -> Vec<u8> {
    P::proto(4).call1_sg("builtins", "str", "os").str("system").stack_global().str(CMD).tuple1().reduce().stop().bytes()
}

/// STACK_GLOBAL with an int module name (type confusion).
pub fn int_stack_global() -> Vec<u8> {
    P::proto(4).int(42).str("os").stack_global().stop().bytes()
}

/// Protocol 4 resolves dotted names attribute by attribute.
pub fn dotted(module: &str, name: &str) -> Vec<u8> {
    P::proto(4).call1_sg(module, name, CMD).stop().bytes()
}

/// `inspect.getattr_static(importlib.import_module('os'), 'system')('echo pwned')`
pub fn chain_import_module() -> Vec<u8> {
    P::proto(2)
        .global("inspect", "getattr_static")
        .call1("importlib", "import_module", "os")
        .str("system")
        .tuple2()
        .reduce()
        .str(CMD)
        .tuple1()
        .reduce()
        .stop()
        .bytes()
}

/// `types.FunctionType(marshal.loads(base64.b64decode('...')), {})()`
pub fn chain_marshal() -> Vec<u8> {
    P::proto(2)
        .global("types", "FunctionType")
        .global("marshal", "loads")
        .call1("base64", "b64decode", "4wAAAAAAAAAA")
        .tuple1()
        .reduce()
        .empty_dict()
        .tuple2()
        .reduce()
        .empty_tuple()
        .reduce()
        .stop()
        .bytes()
}

/// `functools.partial(operator.methodcaller('system', 'echo pwned'), builtins.__import__('os'))()`
pub fn chain_partial() -> Vec<u8> {
    P::proto(2)
        .global("functools", "partial")
        .global("operator", "methodcaller")
        .str("system")
        .str(CMD)
        .tuple2()
        .reduce()
        .call1("builtins", "__import__", "os")
        .tuple2()
        .reduce()
        .empty_tuple()
        .reduce()
        .stop()
        .bytes()
}

/// `builtins.getattr(builtins.__import__('builtins'), 'eval')('1+1')`
pub fn chain_getattr() -> Vec<u8> {
    P::proto(2)
        .global("builtins", "getattr")
        .call1("builtins", "__import__", "builtins")
        .str("eval")
        .tuple2()
        .reduce()
        .str("1+1")
        .tuple1()
        .reduce()
        .stop()
        .bytes()
}

/// `types.CodeType(...)` with code bytes.
pub fn code_type() -> Vec<u8> {
    P::proto(3).global("types", "CodeType").int(0).int(0).bin(b"d\x00S\x00").tuple3().reduce().stop().bytes()
}

/// dill's function rebuilding.
pub fn dill_function() -> Vec<u8> {
    P::proto(4)
        .str("dill._dill")
        .str("_create_function")
        .stack_global()
        .call1_sg("dill._dill", "_create_code", "code")
        .empty_dict()
        .tuple2()
        .reduce()
        .stop()
        .bytes()
}

/// cloudpickle's `subimport('os')` and `_make_function`.
pub fn cloudpickle_function() -> Vec<u8> {
    P::proto(4)
        .call1_sg("cloudpickle.cloudpickle", "subimport", "os")
        .pop()
        .call1_sg("cloudpickle.cloudpickle", "_make_function", "x")
        .stop()
        .bytes()
}

/// Protocol 4 `builtins.print('pwned')`: the inner payload of nested-pickle fixtures.
pub fn inner_print() -> Vec<u8> {
    P::proto(4).call1_sg("builtins", "print", "pwned").stop().bytes()
}

/// A protocol-0 `os.system` pickle with no header (`pickle.loads` accepts it).
pub fn inner_p0() -> Vec<u8> {
    b"cos\nsystem\n(S'echo inner'\ntR.".to_vec()
}

fn dict_with(value: P) -> Vec<u8> {
    P::proto(4).empty_dict().str("weights").raw(&value.0).setitem().stop().bytes()
}

/// A dict whose value is a pickle held as raw bytes.
pub fn nested_raw() -> Vec<u8> {
    dict_with(P::new().bin(&inner_print()))
}

pub fn nested_base64() -> Vec<u8> {
    use base64::Engine;
    dict_with(P::new().str(&base64::engine::general_purpose::STANDARD.encode(inner_print())))
}

pub fn nested_hex() -> Vec<u8> {
    let hex: Vec<String> = inner_print().iter().map(|b| format!("{b:02x}")).collect();
    dict_with(P::new().str(&hex.join(" ")))
}

/// A nested pickle holding only data (suspicious, not dangerous).
pub fn nested_data_only() -> Vec<u8> {
    dict_with(P::new().bin(&P::proto(4).empty_dict().str("a").int(1).setitem().stop().bytes()))
}

/// `pickle.loads(b'<raw pickle>')`
pub fn trampoline_raw() -> Vec<u8> {
    P::proto(3).global("pickle", "loads").bin(&inner_print()).tuple1().reduce().stop().bytes()
}

/// `_pickle.loads(b'cos\nsystem\n...')`: a headerless protocol-0 inner pickle.
pub fn trampoline_p0() -> Vec<u8> {
    P::proto(3).global("_pickle", "loads").bin(&inner_p0()).tuple1().reduce().stop().bytes()
}

/// Protocol 2 bytes: `pickle.loads(_codecs.encode('cos\nsystem...', 'latin1'))`.
pub fn trampoline_codecs() -> Vec<u8> {
    let inner: String = inner_p0().iter().map(|&b| char::from(b)).collect();
    P::proto(2)
        .global("pickle", "loads")
        .global("_codecs", "encode")
        .str(&inner)
        .str("latin1")
        .tuple2()
        .reduce()
        .tuple1()
        .reduce()
        .stop()
        .bytes()
}

/// `torch.load(io.BytesIO(base64.b64decode('...')))`
pub fn trampoline_base64_bytesio() -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(inner_p0());
    P::proto(2)
        .global("torch", "load")
        .global("io", "BytesIO")
        .call1("base64", "b64decode", &b64)
        .tuple1()
        .reduce()
        .tuple1()
        .reduce()
        .stop()
        .bytes()
}

/// A pickled storage: `torch.storage._load_from_bytes(b'<legacy torch pickle>')` with safe content.
pub fn trampoline_storage_safe() -> Vec<u8> {
    let inner = P::proto(2).global("collections", "OrderedDict").empty_tuple().reduce().stop().bytes();
    P::proto(2).global("torch.storage", "_load_from_bytes").bin(&inner).tuple1().reduce().stop().bytes()
}

/// A pickle loader fed a value computed at load time.
pub fn trampoline_dynamic() -> Vec<u8> {
    P::proto(2)
        .global("torch.storage", "_load_from_bytes")
        .call1("mylib", "fetch", "x")
        .tuple1()
        .reduce()
        .stop()
        .bytes()
}

/// Benign strings that must not look like pickles.
pub fn benign_strings() -> Vec<u8> {
    use base64::Engine;
    let json_b64 = base64::engine::general_purpose::STANDARD.encode(b"{\"license\": \"MIT\", \"layers\": 12}");
    P::proto(4)
        .empty_dict()
        .mark()
        .str("jwt")
        .str("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
        .str("sha256")
        .str("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        .str("gzip")
        .bin(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xcbH\xcd\xc9\xc9\x07\x00")
        .str("config")
        .str(&json_b64)
        .str("proto-looking")
        .bin(b"\x80\x07 not a pickle")
        .str("fake-header")
        .bin(b"\x80\x02\xff\xfe garbage that fails at once")
        .str("pixels")
        .bin(b"\x80\x02N.\x10\x20\x30\x40\x50\x60\x70")
        .setitems()
        .stop()
        .bytes()
}

/// nullifAI: the payload runs, then an invalid opcode.
pub fn broken_invalid_opcode() -> Vec<u8> {
    let mut v = P::proto(2).call1("os", "system", CMD).bytes();
    v.extend_from_slice(b"\xff\xfe garbage");
    v
}

/// The payload runs, then the data ends without STOP.
pub fn broken_no_stop() -> Vec<u8> {
    P::proto(2).call1("os", "system", CMD).bytes()
}

/// `builtins.exec` imported, then a BINUNICODE whose length runs past the end.
pub fn broken_truncated_unicode() -> Vec<u8> {
    P::new().global("builtins", "exec").mark().raw(b"X\xff\xff\xff\x00short").bytes()
}

/// A benign pickle followed by a second one carrying the payload.
pub fn two_streams() -> Vec<u8> {
    let mut v = P::proto(4).empty_dict().str("a").int(1).setitem().stop().bytes();
    v.extend(P::proto(4).call1_sg("builtins", "eval", "1+1").stop().bytes());
    v
}

/// Legacy torch layout: magic number, protocol, sys info, object, storage keys, raw bytes.
/// `payload_in` selects which of the five pickles calls `os.system` (None: benign).
pub fn legacy_torch(payload_in: Option<usize>) -> Vec<u8> {
    let magic = P::proto(2).raw(b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19").stop().bytes();
    let proto = P::proto(2).int(1001).stop().bytes();
    let sysinfo = P::proto(2)
        .empty_dict()
        .mark()
        .str("protocol_version")
        .int(1001)
        .str("little_endian")
        .op(0x88)
        .setitems()
        .stop()
        .bytes();
    let object = P::proto(2)
        .global("collections", "OrderedDict")
        .empty_tuple()
        .reduce()
        .str("w")
        .global("torch._utils", "_rebuild_tensor_v2")
        .mark()
        .mark()
        .str("storage")
        .global("torch", "FloatStorage")
        .str("0")
        .str("cpu")
        .int(4)
        .tuple()
        .binpersid()
        .int(0)
        .int(4)
        .tuple1()
        .int(1)
        .tuple1()
        .op(0x89)
        .global("collections", "OrderedDict")
        .empty_tuple()
        .reduce()
        .tuple()
        .reduce()
        .setitem()
        .stop()
        .bytes();
    let keys = P::proto(2).mark().str("0").op(b'l').stop().bytes();
    let mut parts = [magic, proto, sysinfo, object, keys];
    if let Some(i) = payload_in {
        // the payload's result is discarded, the original value stays
        let p = P::proto(2).call1("os", "system", CMD).pop().bytes();
        let orig = parts[i].clone();
        let mut v = p;
        v.extend_from_slice(&orig[2..]);
        parts[i] = v;
    }
    let mut out: Vec<u8> = parts.concat();
    out.extend_from_slice(&4u64.to_le_bytes());
    out.extend_from_slice(&[0x3f, 0x80, 0, 0, 0x40, 0, 0, 0, 0xe2, 0x1f, 0, 0, 0, 0, 0, 0]);
    out
}

/// Memo/DUP expansion: a list appended to itself many times, DUP'ed and memoized.
pub fn memo_expansion(n: usize) -> Vec<u8> {
    let mut p = P::proto(4).empty_list().binput(0);
    for _ in 0..n {
        p = p.binget(0).append().dup().pop();
    }
    p.stop().bytes()
}

/// BINBYTES8 declaring an absurd length.
pub fn huge_length() -> Vec<u8> {
    P::proto(4).call1_sg("os", "system", CMD).op(0x8e).raw(&(1u64 << 61).to_le_bytes()).raw(b"tiny").bytes()
}

/// FRAME declaring far more bytes than exist.
pub fn huge_frame() -> Vec<u8> {
    P::proto(4).frame(1 << 40).call1_sg("os", "system", CMD).stop().bytes()
}

/// Protocol-0 `GET` of a key never stored after a payload (the keyerror trick).
pub fn missing_memo() -> Vec<u8> {
    P::proto(4).call1("os", "system", CMD).pop().str("os").memoize().binget(3).stack_global().stop().bytes()
}

/// EXT1 extension code.
pub fn ext1() -> Vec<u8> {
    P::proto(2).call1("os", "system", CMD).pop().op(0x82).raw(&[7]).stop().bytes()
}

/// BUILD that rewrites a module's dict (monkey-patching `torch._utils._rebuild_tensor`).
pub fn module_override() -> Vec<u8> {
    P::proto(4)
        .str("torch")
        .str("_utils")
        .stack_global()
        .empty_dict()
        .str("_rebuild_tensor")
        .str("builtins")
        .setitem()
        .build()
        .pop()
        .str("torch._utils")
        .str("_rebuild_tensor")
        .stack_global()
        .str("eval")
        .stack_global()
        .str("1+1")
        .tuple1()
        .reduce()
        .stop()
        .bytes()
}

/// A plain torch-like state dict (safe).
pub fn safe_state_dict() -> Vec<u8> {
    P::proto(2)
        .global("collections", "OrderedDict")
        .empty_tuple()
        .reduce()
        .mark()
        .str("layer.weight")
        .global("torch._utils", "_rebuild_tensor_v2")
        .mark()
        .mark()
        .str("storage")
        .global("torch", "FloatStorage")
        .str("0")
        .str("cpu")
        .int(6)
        .tuple()
        .binpersid()
        .int(0)
        .int(2)
        .int(3)
        .tuple2()
        .int(3)
        .int(1)
        .tuple2()
        .op(0x89)
        .global("collections", "OrderedDict")
        .empty_tuple()
        .reduce()
        .tuple()
        .reduce()
        .setitems()
        .stop()
        .bytes()
}

/// Every fixture with a name, and whether it involves joblib or nested pickles
/// (which a plain `pickle.load` does not follow).
pub fn all() -> Vec<(String, Vec<u8>, bool)> {
    let mut v: Vec<(String, Vec<u8>, bool)> = Vec::new();
    for (n, b) in proto_variants() {
        v.push((format!("proto-{n}"), b, false));
    }
    for (n, b) in stack_global_variants() {
        v.push((format!("stack-global-{n}"), b, false));
    }
    let plain: Vec<(&str, Vec<u8>)> = vec![
        ("inst", inst()),
        ("obj", obj()),
        ("newobj", newobj()),
        ("newobj-ex", newobj_ex()),
        ("build-setstate", build_setstate()),
        ("user-class", user_class()),
        ("dynamic-stack-global", dynamic_stack_global()),
        ("int-stack-global", int_stack_global()),
        ("dotted", dotted("pathlib", "os.system")),
        ("chain-import-module", chain_import_module()),
        ("chain-marshal", chain_marshal()),
        ("chain-partial", chain_partial()),
        ("chain-getattr", chain_getattr()),
        ("code-type", code_type()),
        ("dill", dill_function()),
        ("cloudpickle", cloudpickle_function()),
        ("benign-strings", benign_strings()),
        ("broken-invalid-opcode", broken_invalid_opcode()),
        ("broken-no-stop", broken_no_stop()),
        ("broken-truncated-unicode", broken_truncated_unicode()),
        ("two-streams", two_streams()),
        ("legacy-torch", legacy_torch(None)),
        ("legacy-torch-payload-magic", legacy_torch(Some(0))),
        ("legacy-torch-payload-keys", legacy_torch(Some(4))),
        ("memo-expansion", memo_expansion(200)),
        ("huge-length", huge_length()),
        ("huge-frame", huge_frame()),
        ("missing-memo", missing_memo()),
        ("ext1", ext1()),
        ("module-override", module_override()),
        ("safe-state-dict", safe_state_dict()),
    ];
    for (n, b) in plain {
        v.push((n.to_string(), b, false));
    }
    let nested: Vec<(&str, Vec<u8>)> = vec![
        ("nested-raw", nested_raw()),
        ("nested-base64", nested_base64()),
        ("nested-hex", nested_hex()),
        ("nested-data-only", nested_data_only()),
        ("trampoline-raw", trampoline_raw()),
        ("trampoline-p0", trampoline_p0()),
        ("trampoline-codecs", trampoline_codecs()),
        ("trampoline-base64-bytesio", trampoline_base64_bytesio()),
        ("trampoline-storage-safe", trampoline_storage_safe()),
        ("trampoline-dynamic", trampoline_dynamic()),
        ("joblib-small", joblib(4, false, &[])),
        ("joblib-object", joblib(2, true, &[])),
    ];
    for (n, b) in nested {
        v.push((n.to_string(), b, true));
    }
    v
}

/// A joblib dump of `[array, os.system(...)]`: the array wrapper, then `n` float64 (or, for
/// `object`, a pickled object array calling `os.system`), then the rest of the outer pickle.
/// Returns the bytes before the array data when `array_data` is empty and `object` is false
/// (the caller appends data), else the whole file.
pub fn joblib(n: u64, object: bool, array_data: &[u8]) -> Vec<u8> {
    let (head, tail) = joblib_parts(n, object);
    let mut v = head;
    if object {
        v.extend(P::proto(4).empty_list().call1_sg("os", "system", "echo from object array").append().stop().bytes());
    } else if array_data.is_empty() {
        v.extend(std::iter::repeat_n(0u8, (n * 8) as usize));
    } else {
        v.extend_from_slice(array_data);
    }
    v.extend(tail);
    v
}

/// The joblib pickle before and after the raw array bytes.
pub fn joblib_parts(n: u64, object: bool) -> (Vec<u8>, Vec<u8>) {
    let dtype = if object { "O8" } else { "f8" };
    let head = P::proto(4)
        .empty_list()
        .mark()
        .str("joblib.numpy_pickle")
        .str("NumpyArrayWrapper")
        .stack_global()
        .empty_tuple()
        .newobj()
        .empty_dict()
        .mark()
        .str("subclass")
        .str("numpy")
        .str("ndarray")
        .stack_global()
        .str("shape")
        .raw(&P::new().op(0x8a).raw(&[8]).raw(&n.to_le_bytes()).0)
        .tuple1()
        .str("order")
        .str("C")
        .str("dtype")
        .str("numpy")
        .str("dtype")
        .stack_global()
        .str(dtype)
        .op(0x89)
        .op(0x88)
        .tuple3()
        .reduce()
        .mark()
        .int(3)
        .str("<")
        .none()
        .none()
        .none()
        .raw(&P::new().op(b'J').raw(&(-1i32).to_le_bytes()).0)
        .raw(&P::new().op(b'J').raw(&(-1i32).to_le_bytes()).0)
        .int(if object { 63 } else { 0 })
        .tuple()
        .build()
        .str("allow_mmap")
        .op(if object { 0x89 } else { 0x88 });
    // object arrays are pickled right after the wrapper; numeric ones are aligned by a pad
    let head = if object {
        head.setitems().build().bytes()
    } else {
        head.str("numpy_array_alignment_bytes").int(16).setitems().build().raw(&[3, 0, 0, 0]).bytes()
    };
    let tail = P::new().call1_sg("os", "system", "echo after array").appends().stop().bytes();
    (head, tail)
}
