//! joblib dumps: after the BUILD of a `NumpyArrayWrapper`, joblib's NumpyUnpickler reads
//! the array's raw bytes straight from the stream (or, for object arrays, a whole pickle).
//! Their size follows from the wrapper's state: shape, dtype (itemsize) and an optional
//! alignment pad. Skipping them exactly lets the scan see what comes after the array.

use super::emu::Machine;
use super::value::{CallKind, Id, Value, NIL};

const WRAPPER_MODULES: &[&str] = &["joblib.numpy_pickle", "sklearn.externals.joblib.numpy_pickle"];

/// Where the array bytes are and what they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    pub bytes: u64,
    pub object: bool,
    pub aligned: bool,
}

/// Modules old joblib wrappers are imported from (the compat module itself is denylisted).
const COMPAT_MODULES: &[&str] = &[
    "joblib.numpy_pickle",
    "sklearn.externals.joblib.numpy_pickle",
    "joblib.numpy_pickle_compat",
    "sklearn.externals.joblib.numpy_pickle_compat",
];

fn is_class(m: &Machine<'_>, id: Id, names: &[&str], modules: &[&str]) -> bool {
    match m.a.get(id) {
        Value::Global(n) => m
            .imports
            .get(n as usize)
            .is_some_and(|i| names.contains(&i.name.as_str()) && modules.contains(&i.module.as_str())),
        _ => false,
    }
}

/// The class `inst` was made from, when it is one of `names` (directly, or through protocol 0/1's
/// `copyreg._reconstructor(cls, object, None)`), with the constructor arguments (`NIL` when
/// `__init__` does not run: NEWOBJ calls only `__new__`).
fn instance_of(m: &Machine<'_>, inst: Id, names: &[&str], modules: &[&str]) -> Option<Id> {
    let Value::Call(c) = m.a.get(inst) else { return None };
    match c.kind {
        CallKind::NewObj | CallKind::NewObjEx => is_class(m, c.func, names, modules).then_some(NIL),
        CallKind::Obj | CallKind::Inst => is_class(m, c.func, names, modules).then_some(c.args),
        CallKind::Reduce => {
            if is_class(m, c.func, names, modules) {
                return Some(c.args);
            }
            let reconstructor = matches!(m.a.get(c.func), Value::Global(n)
                if m.imports.get(n as usize).is_some_and(|i| i.module == "copyreg" && i.name == "_reconstructor"));
            let cls = m.a.tuple_items(c.args).and_then(|it| it.first().copied());
            (reconstructor && cls.is_some_and(|cls| is_class(m, cls, names, modules))).then_some(NIL)
        }
        CallKind::PersId | CallKind::JoblibArray => None,
    }
}

/// Is `inst` an instance of joblib's `NumpyArrayWrapper`?
pub(super) fn is_wrapper(m: &Machine<'_>, inst: Id) -> bool {
    instance_of(m, inst, &["NumpyArrayWrapper"], WRAPPER_MODULES).is_some()
}

/// For a BUILD of an old joblib `NDArrayWrapper`/`ZNDArrayWrapper` (`inst`) with `state`: the
/// file joblib.load will read, `Ok(name)` when it is a plain name in the dump's folder, `Err(why)`
/// otherwise; `None` when `inst` is no such wrapper or names no file (reading it then fails).
/// The state wins over the constructor's first argument, as `__dict__.update` does after
/// `__init__(filename, ...)`.
pub(super) fn compat_wrapper_file(m: &Machine<'_>, inst: Id, state: Id) -> Option<Result<String, String>> {
    let args = instance_of(m, inst, &["NDArrayWrapper", "ZNDArrayWrapper"], COMPAT_MODULES)?;
    let a = &m.a;
    // `Unpickler.load_build` without __setstate__: (dict, slots) pairs, dict.update, setattr
    let dicts: Vec<Id> = match a.get(state) {
        Value::Dict(_) => vec![state],
        Value::None => vec![],
        Value::Tuple(..) => match a.tuple_items(state) {
            Some(&[d, s]) => [d, s].into_iter().filter(|&x| !matches!(a.get(x), Value::None)).collect(),
            _ => return Some(Err("its state is not a dict, so the file it names cannot be told".into())),
        },
        _ => return Some(Err("its state is not a dict, so the file it names cannot be told".into())),
    };
    let mut name = None;
    for d in dicts {
        if !matches!(a.get(d), Value::Dict(_)) {
            return Some(Err("its state is not a dict, so the file it names cannot be told".into()));
        }
        if let Some(v) = a.dict_get(d, "filename") {
            name = Some(v);
        }
    }
    let name = match name {
        Some(v) => v,
        None => a.tuple_items(args).and_then(|it| it.first().copied())?,
    };
    let Some(text) = a.as_str(name) else {
        return Some(Err("the file name it holds is not a constant string".into()));
    };
    let plain = !text.is_empty() && text != "." && text != ".." && !text.contains(['/', '\\', ':', '\0']);
    Some(if plain { Ok(text) } else { Err(format!("it names '{text}', which is not a file in the dump's own folder")) })
}

/// The array layout from the wrapper's BUILD state.
pub(super) fn layout(m: &Machine<'_>, state: Id) -> Result<Layout, String> {
    let a = &m.a;
    if !matches!(a.get(state), Value::Dict(_)) {
        return Err("joblib array wrapper state is not a plain dict; the array size is unknown".into());
    }
    let shape = a.dict_get(state, "shape").ok_or("joblib array wrapper has no readable shape")?;
    let dims = a.tuple_items(shape).ok_or("joblib array shape is not a tuple of integers")?;
    let mut count: u64 = 1;
    for &d in dims {
        let n =
            a.as_int(d).and_then(|n| u64::try_from(n).ok()).ok_or("joblib array shape is not a tuple of integers")?;
        count = count.checked_mul(n).ok_or("joblib array shape overflows")?;
    }
    let dtype = a.dict_get(state, "dtype").ok_or("joblib array wrapper has no readable dtype")?;
    let (itemsize, object) = dtype_info(m, dtype)?;
    let aligned = a.dict_get(state, "numpy_array_alignment_bytes").is_some_and(|v| !matches!(a.get(v), Value::None));
    let bytes = count.checked_mul(itemsize).ok_or("joblib array size overflows")?;
    Ok(Layout { bytes, object, aligned })
}

/// Itemsize and "holds Python objects" of a pickled `numpy.dtype(spec, False, True)` with its
/// BUILD state `(version, byteorder, subarray, names, fields, elsize, alignment, flags)`.
fn dtype_info(m: &Machine<'_>, id: Id) -> Result<(u64, bool), String> {
    let a = &m.a;
    let Value::Call(c) = a.get(id) else {
        return Err("joblib array dtype is not a reconstructed numpy.dtype".into());
    };
    let is_dtype = matches!(a.get(c.func), Value::Global(n)
        if m.imports.get(n as usize).is_some_and(|i| i.name == "dtype" && i.module.starts_with("numpy")));
    if c.kind != CallKind::Reduce || !is_dtype {
        return Err("joblib array dtype is not a reconstructed numpy.dtype".into());
    }
    let spec = a
        .tuple_items(c.args)
        .and_then(|it| it.first().copied())
        .and_then(|s| a.as_str(s))
        .ok_or("joblib array dtype has no type string")?;
    let state = if c.state == super::value::NIL { None } else { a.tuple_items(c.state) };
    let state_int = |i: usize| state.and_then(|s| s.get(i).copied()).and_then(|v| a.as_int(v));
    let elsize = state_int(5).filter(|&e| e > 0).and_then(|e| u64::try_from(e).ok());
    let flags_object = state.is_some_and(|s| s.len() >= 8) && state_int(7).is_some_and(|f| f & 1 != 0);
    let spec = spec.trim_start_matches(['<', '>', '|', '=']);
    let (kind, digits) = match spec.char_indices().find(|(_, ch)| ch.is_ascii_digit()) {
        Some((i, _)) => (spec.get(..i).unwrap_or(""), spec.get(i..).unwrap_or("")),
        None => (spec, ""),
    };
    let n: Option<u64> = digits.parse().ok().filter(|&n| n > 0);
    let named = match kind {
        "bool" => Some((1, 'b')),
        "int8" | "uint8" => Some((1, 'i')),
        "int16" | "uint16" | "float16" => Some((2, 'f')),
        "int32" | "uint32" | "float32" => Some((4, 'f')),
        "int64" | "uint64" | "float64" | "complex64" | "int" | "float" => Some((8, 'f')),
        "complex128" | "complex" => Some((16, 'c')),
        "object" => Some((8, 'O')),
        _ => None,
    };
    if let Some((size, k)) = named {
        if digits.is_empty() {
            return Ok((size, k == 'O' || flags_object));
        }
    }
    let size = match kind {
        "O" => return Ok((8, true)),
        "b" | "i" | "u" | "f" | "c" | "M" | "m" | "S" | "V" | "a" => n.or(elsize),
        "U" => n.map(|c| c.saturating_mul(4)).or(elsize),
        "?" => Some(1),
        _ => None,
    };
    match size {
        Some(s) => Ok((s, flags_object)),
        None => Err(format!("joblib array dtype '{spec}' has an unknown item size")),
    }
}
