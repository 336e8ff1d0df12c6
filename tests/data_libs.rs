//! Files written by the real data libraries (numpy, pandas, scikit-learn, joblib; made by
//! tests/fixtures/data_libs/make_data_libs.py) are `safe`: every name they import is on the
//! reviewed allowlist. Pickles that abuse the same names to reach something else stay dangerous.

mod common;

use common::{find, must, scan, P};
use modelgate::engine::{scan_path, ScanOptions};
use modelgate::finding::Verdict;
use std::path::{Path, PathBuf};

const DIR: &str = "tests/fixtures/data_libs";

fn fixtures(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            fixtures(&p, out);
        } else if p.extension().is_none_or(|e| e != "py") {
            out.push(p);
        }
    }
}

#[test]
fn files_of_the_data_libraries_are_safe() {
    let mut files = Vec::new();
    fixtures(Path::new(DIR), &mut files);
    assert!(files.len() >= 60, "{} fixtures", files.len());
    let opts = ScanOptions::default();
    let mut imports = std::collections::BTreeSet::new();
    let mut bad = Vec::new();
    for f in &files {
        let r = scan_path(f, &f.display().to_string(), &opts);
        imports.extend(r.imports.iter().map(|i| i.full_name()));
        // the old joblib's sibling arrays are plain .npy files: nothing to import, safe
        if r.verdict != Verdict::Safe {
            bad.push(format!("{}: {:?} {:?}", f.display(), r.verdict, r.findings));
        }
    }
    assert!(bad.is_empty(), "not safe:\n{}", bad.join("\n"));
    // the fixtures cover every generation of names the issue lists
    for name in [
        "numpy.matrix",
        "numpy.recarray",
        "numpy.rec.recarray",
        "numpy.record",
        "numpy.ma.core.MaskedArray",
        "numpy.ma.core.MaskedConstant",
        "numpy.ma.core.mvoid",
        "numpy.random.__RandomState_ctor",
        "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
        "numpy._core._internal._convert_to_stringdtype_kwargs",
        "joblib.numpy_pickle.NDArrayWrapper",
        "joblib.numpy_pickle.NumpyArrayWrapper",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "pandas.core.frame.DataFrame",
        "pandas.DataFrame",
        "pandas.core.indexes.base._new_Index",
        "pandas.core.indexes.frozen.FrozenNDArray",
        "pandas.core.internals.managers.BlockManager",
        "pandas._libs.internals._unpickle_block",
        "pandas._libs.arrays.__pyx_unpickle_NDArrayBacked",
        "pandas._libs.tslibs.timestamps._unpickle_timestamp",
        "pandas.core.arrays.categorical.Categorical",
        "pandas.tseries.offsets.MonthEnd",
    ] {
        assert!(imports.contains(name), "no fixture imports {name}");
    }
}

/// The old joblib dump of the fixtures with its sibling file name replaced (same length, so the
/// frame stays valid): the file a real loader would open.
fn joblib09_naming(name: &str) -> Vec<u8> {
    let real = std::fs::read(format!("{DIR}/joblib0.9.4-multifile/model.pkl")).unwrap();
    let old = b"model.pkl_01.npy";
    assert_eq!(name.len(), old.len());
    let at = real.windows(old.len()).position(|w| w == old).unwrap();
    let mut out = real.clone();
    out[at..at + old.len()].copy_from_slice(name.as_bytes());
    out
}

#[test]
fn old_joblib_wrappers_reading_outside_the_dump_are_dangerous() {
    let same = scan(&joblib09_naming("model.pkl_09.npy"));
    assert_eq!(same.verdict, Verdict::Safe, "{:?}", same.findings);
    for name in ["/etc/model01.npy", "../up/model1.npy", "C:model.pkl_01.n", "sub/model.pkl_01"] {
        let r = scan(&joblib09_naming(name));
        assert_eq!(r.verdict, Verdict::Dangerous, "{name}: {:?}", r.findings);
        let f = must(&r, "pickle-joblib-sibling");
        assert!(f.message.contains(name), "{}", f.message);
    }
    let wrapper = |p: P| p.str("joblib.numpy_pickle").str("NDArrayWrapper").stack_global();
    // the name given to the constructor, and no name in the state
    let by_init = wrapper(P::proto(4)).str("/etc/passwd").tuple1().reduce().empty_dict().build().stop().bytes();
    assert_eq!(scan(&by_init).verdict, Verdict::Dangerous);
    assert!(find(&scan(&by_init), "pickle-joblib-sibling").is_some());
    // a name that is not a constant (built by an allowlisted call): which file is unknown
    let computed = wrapper(P::proto(4))
        .empty_tuple()
        .newobj()
        .empty_dict()
        .str("filename")
        .str("builtins")
        .str("str")
        .stack_global()
        .bin(b"/etc/passwd")
        .str("ascii")
        .tuple2()
        .reduce()
        .setitem()
        .build()
        .stop()
        .bytes();
    assert_eq!(scan(&computed).verdict, Verdict::Dangerous);
    // slot state (None, {...}) is applied with setattr, and counts too
    let slots = wrapper(P::proto(4))
        .empty_tuple()
        .newobj()
        .none()
        .empty_dict()
        .str("filename")
        .str("/proc/self/environ")
        .setitem()
        .tuple2()
        .build()
        .stop()
        .bytes();
    assert_eq!(scan(&slots).verdict, Verdict::Dangerous);
    // ZNDArrayWrapper opens the file itself
    let z = P::proto(4)
        .str("joblib.numpy_pickle")
        .str("ZNDArrayWrapper")
        .stack_global()
        .empty_tuple()
        .newobj()
        .empty_dict()
        .str("filename")
        .str("/etc/shadow")
        .setitem()
        .build()
        .stop()
        .bytes();
    assert_eq!(scan(&z).verdict, Verdict::Dangerous);
}

#[test]
fn allowlisted_names_used_as_gadgets_stay_dangerous() {
    // _new_Index(cls, d) calls cls.__new__(cls, **d): the class is judged as an import
    let new_index = P::proto(4)
        .str("pandas.core.indexes.base")
        .str("_new_Index")
        .stack_global()
        .str("subprocess")
        .str("Popen")
        .stack_global()
        .empty_dict()
        .tuple2()
        .reduce()
        .stop()
        .bytes();
    assert_eq!(scan(&new_index).verdict, Verdict::Dangerous);
    // numpy's generator constructor calls the callable it is given
    let ctor = P::proto(4)
        .str("numpy.random._pickle")
        .str("__generator_ctor")
        .stack_global()
        .str("id")
        .str("os")
        .str("system")
        .stack_global()
        .tuple2()
        .reduce()
        .stop()
        .bytes();
    assert_eq!(scan(&ctor).verdict, Verdict::Dangerous);
    // an attribute walk from an allowlisted class to its function globals
    let walk = P::proto(4).str("pandas.core.frame").str("DataFrame.__init__.__globals__").stack_global().stop().bytes();
    assert_eq!(scan(&walk).verdict, Verdict::Dangerous);
    // a class of another library bound in a scikit-learn module (gzip.GzipFile opens a path)
    let gz = P::proto(4).call1_sg("sklearn.datasets._rcv1", "GzipFile", "/etc/passwd").stop().bytes();
    assert_eq!(scan(&gz).verdict, Verdict::Dangerous);
    // standard-library gadgets outside every list before: typing evaluates, mailcap runs commands
    let eval = P::proto(4).call1_sg("typing", "_eval_type", "x").stop().bytes();
    let r = scan(&eval);
    assert_eq!(r.verdict, Verdict::Dangerous);
    assert!(must(&r, "pickle-import-dangerous").message.contains("standard-library module typing"));
    let mailcap = P::proto(2).call1("mailcap", "findmatch", "x").stop().bytes();
    assert_eq!(scan(&mailcap).verdict, Verdict::Dangerous);
    // a walk through a standard-library module bound in a data library
    let through = P::proto(4).str("numpy.core.numeric").str("functools.reduce").stack_global().stop().bytes();
    assert_eq!(scan(&through).verdict, Verdict::Dangerous);
}
