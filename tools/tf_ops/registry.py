"""Dump every op registered in the installed TensorFlow (the pip package's op registry).

    /opt/tf-venv/bin/python tools/tf_ops/registry.py > registry.tsv

One line per op: name, stateful flag, inputs (`name:type` or `name:*list`), attrs (`name:type`).
`TF_GetAllOpList` is the C API behind `op_def_registry`: it lists every op linked into the
package, including the ones `tf.raw_ops` hides (TPU, quantization, test ops).
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402,F401
from tensorflow.core.framework import op_def_pb2  # noqa: E402
from tensorflow.python.client import pywrap_tf_session as c  # noqa: E402


def arg(a):
    kind = "list" if (a.number_attr or a.type_list_attr) else "one"
    t = tf.dtypes.as_dtype(a.type).name if a.type else (a.type_attr or a.type_list_attr or "?")
    return f"{a.name}:{t}:{kind}"


def main():
    ops = op_def_pb2.OpList()
    ops.ParseFromString(bytes(c.TF_GetBuffer(c.TF_GetAllOpList())))
    print(f"# tensorflow {tf.__version__}: {len(ops.op)} registered ops", file=sys.stderr)
    out = [f"# tensorflow {tf.__version__}"]
    for op in sorted(ops.op, key=lambda o: o.name):
        ins = ",".join(arg(a) for a in op.input_arg)
        attrs = ",".join(f"{a.name}:{a.type}" for a in op.attr)
        out.append("\t".join([op.name, "stateful" if op.is_stateful else "pure", ins, attrs]))
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
