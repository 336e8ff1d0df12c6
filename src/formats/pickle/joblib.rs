//! joblib dumps: after the BUILD of a `NumpyArrayWrapper`, joblib's NumpyUnpickler reads
//! the array's raw bytes straight from the stream (or, when `self.dtype.hasobject`, a whole
//! pickle: `joblib.numpy_pickle.NumpyArrayWrapper.read_array`). Their size follows from the
//! wrapper's state: shape, dtype (itemsize) and an optional alignment pad. Skipping them
//! exactly lets the scan see what comes after the array.
//!
//! The dtype is itself unpickled: `numpy.dtype(spec, align, copy)` and a BUILD state that
//! `arraydescr_setstate` (numpy/_core/src/multiarray/descriptor.c) applies. `hasobject` is
//! never taken from a stored flag alone: it is what numpy computes, the state's flags for
//! state versions 3 and 4, `_descr_find_object` (any flag, an object kind, an object field)
//! for older versions, nothing for states without flags. numpy 2's `StringDType` arrays are
//! pickled with `numpy._core._internal._convert_to_stringdtype_kwargs` and hold objects.

use super::emu::Machine;
use super::value::{BytesKind, CallKind, Id, Value, NIL};
use crate::formats::numpy::dtype::{self, Dt, DtError, OBJECT_FLAGS};
use crate::formats::numpy::Lit;

const WRAPPER_MODULES: &[&str] = &["joblib.numpy_pickle", "sklearn.externals.joblib.numpy_pickle"];

/// Where the array bytes are and what they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Layout {
    pub bytes: u64,
    pub object: bool,
    pub aligned: bool,
    /// The dtype is beyond what modelgate can follow: the data is read as a pickle (where a
    /// payload would be) and this error is reported.
    pub uncertain: Option<String>,
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
    let dtype = a.dict_get(state, "dtype").ok_or("joblib array wrapper has no readable dtype")?;
    let aligned = a.dict_get(state, "numpy_array_alignment_bytes").is_some_and(|v| !matches!(a.get(v), Value::None));
    let (dt, structural) = match pickled_dtype(m, dtype, 0) {
        Ok(found) => found,
        Err(DtError::Invalid(e)) => return Err(format!("numpy refuses the joblib array dtype: {e}")),
        Err(DtError::Unknown(e)) => {
            let msg =
                format!("modelgate cannot tell how joblib reads this array ({e}); its data is scanned as a pickle");
            return Ok(Layout { bytes: 0, object: true, aligned, uncertain: Some(msg) });
        }
    };
    if dt.has_object() {
        // the data is a pickle of its own: its length does not matter
        return Ok(Layout { bytes: 0, object: true, aligned, uncertain: None });
    }
    if structural {
        // numpy would build an object array from raw bytes: pointers the file chose
        return Err("the joblib array dtype holds objects but its pickled flags say it does not \
                    (numpy would read raw pointers; such files crash it)"
            .into());
    }
    let shape = a.dict_get(state, "shape").ok_or("joblib array wrapper has no readable shape")?;
    let dims = match a.get(shape) {
        Value::Tuple(..) => a.tuple_items(shape),
        Value::List(c) if u64::from(c.kept) == c.count => Some(a.items(&c)),
        _ => None,
    }
    .ok_or("joblib array shape is not a sequence of integers")?;
    let mut count: u64 = 1;
    for &d in dims {
        let n =
            a.as_int(d).and_then(|n| u64::try_from(n).ok()).ok_or("joblib array shape is not a tuple of integers")?;
        count = count.checked_mul(n).ok_or("joblib array shape overflows")?;
    }
    let itemsize = dt.itemsize.ok_or("joblib array dtype has an item size modelgate cannot tell")?;
    let bytes = count.checked_mul(itemsize).ok_or("joblib array size overflows")?;
    Ok(Layout { bytes, object: false, aligned, uncertain: None })
}

/// A Python value the pickle built, as a literal (`None` when not all of it is known).
fn to_lit(m: &Machine<'_>, id: Id, depth: usize) -> Option<Lit> {
    if depth > 16 {
        return None;
    }
    let a = &m.a;
    let full = |count: u64, kept: u16| u64::from(kept) == count;
    let list = |ids: &[Id]| ids.iter().map(|&i| to_lit(m, i, depth + 1)).collect::<Option<Vec<_>>>();
    Some(match a.get(id) {
        Value::None => Lit::None,
        Value::Bool(b) => Lit::Bool(b),
        Value::Int(i) => Lit::Int(i128::from(i)),
        Value::BigInt { neg, .. } => Lit::BigInt(neg),
        Value::Float(f) => Lit::Float(f),
        Value::Str(t) if t.full() => Lit::Str(String::from_utf8(a.text(&t).to_vec()).ok()?),
        Value::Bytes(t, BytesKind::Bytes) if t.full() => Lit::Bytes(a.text(&t).to_vec()),
        Value::Tuple(c, _) if full(c.count, c.kept) => Lit::Tuple(list(a.items(&c))?),
        Value::List(c) if full(c.count, c.kept) => Lit::List(list(a.items(&c))?),
        Value::Set(c) if full(c.count, c.kept) => Lit::Set(list(a.items(&c))?),
        Value::Dict(c) if full(c.count, c.kept) => {
            let flat = list(a.items(&c))?;
            let mut pairs = Vec::new();
            let mut it = flat.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            Lit::Dict(pairs)
        }
        _ => return None,
    })
}

fn global<'m>(m: &'m Machine<'_>, id: Id) -> Option<(&'m str, &'m str)> {
    match m.a.get(id) {
        Value::Global(n) => m.imports.get(n as usize).map(|i| (i.module.as_str(), i.name.as_str())),
        _ => None,
    }
}

fn unknown<T>(msg: impl Into<String>) -> Result<T, DtError> {
    Err(DtError::Unknown(msg.into()))
}

/// The dtype object a pickle builds, as numpy makes it, and whether it holds objects in its
/// structure (an object kind, field or subarray) whatever its flags say.
fn pickled_dtype(m: &Machine<'_>, id: Id, depth: usize) -> Result<(Dt, bool), DtError> {
    if depth > 8 {
        return unknown("dtypes nested too deeply");
    }
    let Value::Call(c) = m.a.get(id) else { return unknown("it is not a reconstructed numpy dtype") };
    let Some((module, name)) = global(m, c.func) else { return unknown("it is not a reconstructed numpy dtype") };
    let numpy = module == "numpy" || module.starts_with("numpy.");
    match (name, c.kind) {
        ("dtype", CallKind::Reduce | CallKind::NewObj) if numpy => {
            // numpy.dtype(spec, align=False, copy=False)
            let args = m.a.tuple_items(c.args).ok_or_else(|| DtError::Unknown("its arguments are not known".into()))?;
            let spec = args
                .first()
                .and_then(|&s| to_lit(m, s, 0))
                .ok_or_else(|| DtError::Unknown("its type description is not known".into()))?;
            let align = match args.get(1).map(|&x| to_lit(m, x, 0)) {
                None => false,
                Some(Some(Lit::Bool(b))) => b,
                Some(Some(Lit::Int(i))) => i != 0,
                Some(_) => return unknown("its align argument is not a bool"),
            };
            let dt = dtype::from_any(&spec, 0)?;
            if align && dt.fields {
                return unknown("an aligned structured dtype");
            }
            if c.state == NIL {
                let structural = dt.has_object();
                return Ok((dt, structural));
            }
            setstate(m, dt, c.state, depth)
        }
        ("_convert_to_stringdtype_kwargs" | "StringDType", CallKind::Reduce | CallKind::NewObj)
            if numpy && c.state == NIL =>
        {
            Ok((dtype::from_str("T", 0)?, true))
        }
        ("ObjectDType", CallKind::Reduce | CallKind::NewObj) if numpy && c.state == NIL => {
            Ok((dtype::from_str("O", 0)?, true))
        }
        _ => unknown(format!("{module}.{name} is not a numpy dtype modelgate can follow")),
    }
}

/// Where a dtype state tuple keeps (version, subarray, names, fields, elsize, flags) for its length.
struct StateLayout {
    version: Option<usize>,
    subarray: usize,
    names: Option<usize>,
    fields: usize,
    elsize: usize,
    flags: Option<usize>,
}

fn state_layout(len: usize) -> Option<StateLayout> {
    Some(match len {
        8 | 9 => StateLayout { version: Some(0), subarray: 2, names: Some(3), fields: 4, elsize: 5, flags: Some(7) },
        7 => StateLayout { version: Some(0), subarray: 2, names: Some(3), fields: 4, elsize: 5, flags: None },
        6 => StateLayout { version: Some(0), subarray: 2, names: None, fields: 3, elsize: 4, flags: None },
        5 => StateLayout { version: None, subarray: 1, names: None, fields: 2, elsize: 3, flags: None },
        _ => return None,
    })
}

/// numpy's `arraydescr_setstate`: the dtype after BUILD with `state`, and whether its structure
/// holds objects (the state replaces the subarray, and the fields unless they are `None`).
fn setstate(m: &Machine<'_>, dt: Dt, state: Id, depth: usize) -> Result<(Dt, bool), DtError> {
    let invalid = |msg: &str| Err(DtError::Invalid(msg.to_string()));
    if !dt.legacy {
        return invalid("Cannot unpickle new style DType without custom methods");
    }
    let items = m.a.tuple_items(state).ok_or_else(|| DtError::Unknown("its state is not a known tuple".into()))?;
    let Some(lay) = state_layout(items.len()) else {
        return invalid("Invalid state while unpickling");
    };
    let int_at = |i: usize| items.get(i).and_then(|&x| to_lit(m, x, 0)).and_then(|l| l.as_int());
    let version = match lay.version {
        None => 0,
        Some(i) => int_at(i).ok_or_else(|| DtError::Invalid("the state version is not an int".into()))?,
    };
    if !(0..=4).contains(&version) {
        return invalid("can't handle this version of numpy.dtype pickle");
    }
    if lay.names.is_none() && version >= 2 {
        return unknown("a 6-item dtype state of version 2 or later");
    }
    let fields = items.get(lay.fields).copied().unwrap_or(NIL);
    let has_fields = !matches!(m.a.get(fields), Value::None);
    if has_fields && !matches!(m.a.get(fields), Value::Dict(_)) {
        return invalid("non-dict fields in Numpy dtype unpickling");
    }
    if has_fields && version <= 1 {
        return unknown("field names of a version 0/1 dtype state");
    }
    // The subarray is always replaced: a pickled (base dtype, shape) or none.
    let subarray = items.get(lay.subarray).copied().unwrap_or(NIL);
    let sub_object = match m.a.get(subarray) {
        Value::None => false,
        _ => {
            let parts = m.a.tuple_items(subarray).filter(|p| p.len() == 2);
            let base =
                parts.and_then(|p| p.first().copied()).ok_or_else(|| DtError::Invalid("incorrect subarray".into()))?;
            let (bd, bs) = pickled_dtype(m, base, depth + 1)?;
            bs || bd.kind == b'O'
        }
    };
    // The flags: stored ('k' masks any int to 64 bits; -128..-1 are old signed chars), then
    // recomputed for versions before 3 (`_descr_find_object`).
    let stored: u64 = match lay.flags {
        None => 0,
        Some(i) => match items.get(i).and_then(|&x| to_lit(m, x, 0)) {
            Some(Lit::Int(v)) if (-128..0).contains(&v) => (v + 128) as u64,
            Some(Lit::Int(v)) => v as u64,
            Some(Lit::Bool(b)) => u64::from(b),
            _ => return unknown("the stored dtype flags are not an int modelgate can read"),
        },
    };
    // fields the state leaves alone are the spec's (a comma string's, say)
    let spec_fields = dt.fields && !has_fields;
    let mut flags = stored;
    if version < 3 {
        let found = flags != 0
            || dt.kind == b'O'
            || (has_fields && fields_hold_object(m, fields, depth)?)
            || (spec_fields && dt.flags & 0x0b != 0);
        flags = if found { OBJECT_FLAGS } else { 0 };
    }
    let structural = dt.kind == b'O'
        || sub_object
        || (has_fields && fields_contain_object(m, fields, depth)?)
        || (spec_fields && dt.has_object());
    let mut new = Dt { flags, fields: dt.fields || has_fields, ..dt.clone() };
    if dt.extended() {
        // a negative size leaves the item size unknown (it matters only for raw data)
        new.itemsize = int_at(lay.elsize).and_then(|e| u64::try_from(e).ok());
    }
    Ok((new, structural))
}

/// Whether any field's dtype stores objects (an object kind, at any depth; flags aside).
fn fields_contain_object(m: &Machine<'_>, fields: Id, depth: usize) -> Result<bool, DtError> {
    let Value::Dict(c) = m.a.get(fields) else { return Ok(false) };
    if u64::from(c.kept) < c.count {
        return unknown("a dtype with more fields than modelgate keeps");
    }
    for kv in m.a.items(&c).chunks_exact(2) {
        let Some(&value) = kv.get(1) else { continue };
        let Some(descr) = m.a.tuple_items(value).and_then(|e| e.first().copied()) else { continue };
        match pickled_dtype(m, descr, depth + 1) {
            Ok((d, s)) if s || d.kind == b'O' => return Ok(true),
            Ok(_) | Err(DtError::Invalid(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// `_descr_find_object` over a fields dict: the first field whose dtype has any flag, an
/// object kind or such a field of its own; a malformed entry ends the search (numpy returns 0).
fn fields_hold_object(m: &Machine<'_>, fields: Id, depth: usize) -> Result<bool, DtError> {
    let Value::Dict(c) = m.a.get(fields) else { return Ok(false) };
    if u64::from(c.kept) < c.count {
        return unknown("a dtype with more fields than modelgate keeps");
    }
    for kv in m.a.items(&c).chunks_exact(2) {
        let (&key, &value) = match kv {
            [k, v] => (k, v),
            _ => continue,
        };
        let Some(entry) = m.a.tuple_items(value) else { return Ok(false) };
        // NPY_TITLE_KEY: a title's entry repeats the title as its third element
        if entry.len() == 3 {
            let (t, k) = (entry.get(2).and_then(|&x| to_lit(m, x, 0)), to_lit(m, key, 0));
            if matches!((&t, &k), (Some(t), Some(k)) if t.py_eq(k)) {
                continue;
            }
        }
        let offset_ok = entry.get(1).is_some_and(|&o| matches!(m.a.get(o), Value::Int(_) | Value::Bool(_)));
        if !(2..=3).contains(&entry.len()) || !offset_ok {
            return Ok(false);
        }
        let descr = entry.first().copied().unwrap_or(NIL);
        if descr_find_object(m, descr, depth + 1)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `_descr_find_object` on a field's dtype object.
fn descr_find_object(m: &Machine<'_>, id: Id, depth: usize) -> Result<bool, DtError> {
    let (dt, _) = pickled_dtype(m, id, depth)?;
    if dt.flags != 0 || dt.kind == b'O' {
        return Ok(true);
    }
    let Value::Call(c) = m.a.get(id) else { return Ok(false) };
    let Some(items) = m.a.tuple_items(c.state) else { return Ok(false) };
    let Some(lay) = state_layout(items.len()) else { return Ok(false) };
    let fields = items.get(lay.fields).copied().unwrap_or(NIL);
    if matches!(m.a.get(fields), Value::Dict(_)) {
        return fields_hold_object(m, fields, depth);
    }
    Ok(false)
}
