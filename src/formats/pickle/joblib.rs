//! joblib dumps: after the BUILD of a `NumpyArrayWrapper`, joblib's NumpyUnpickler reads
//! the array's raw bytes straight from the stream (or, for object arrays, a whole pickle).
//! Their size follows from the wrapper's state: shape, dtype (itemsize) and an optional
//! alignment pad. Skipping them exactly lets the scan see what comes after the array.

use super::emu::Machine;
use super::value::{CallKind, Id, Value};

const WRAPPER_MODULES: &[&str] = &["joblib.numpy_pickle", "sklearn.externals.joblib.numpy_pickle"];

/// Where the array bytes are and what they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    pub bytes: u64,
    pub object: bool,
    pub aligned: bool,
}

fn is_wrapper_class(m: &Machine<'_>, id: Id) -> bool {
    match m.a.get(id) {
        Value::Global(n) => m
            .imports
            .get(n as usize)
            .is_some_and(|i| i.name == "NumpyArrayWrapper" && WRAPPER_MODULES.contains(&i.module.as_str())),
        _ => false,
    }
}

/// Is `inst` an instance of joblib's `NumpyArrayWrapper`?
pub(super) fn is_wrapper(m: &Machine<'_>, inst: Id) -> bool {
    let Value::Call(c) = m.a.get(inst) else { return false };
    match c.kind {
        CallKind::NewObj | CallKind::NewObjEx | CallKind::Obj | CallKind::Inst => is_wrapper_class(m, c.func),
        CallKind::Reduce => {
            if is_wrapper_class(m, c.func) {
                return true;
            }
            // protocol 0/1: copyreg._reconstructor(NumpyArrayWrapper, object, None)
            let reconstructor = matches!(m.a.get(c.func), Value::Global(n)
                if m.imports.get(n as usize).is_some_and(|i| i.module == "copyreg" && i.name == "_reconstructor"));
            reconstructor
                && m.a
                    .tuple_items(c.args)
                    .and_then(|it| it.first().copied())
                    .is_some_and(|cls| is_wrapper_class(m, cls))
        }
        CallKind::PersId | CallKind::JoblibArray => false,
    }
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
