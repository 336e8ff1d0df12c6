"""Benign torch files made by the real torch (run with the interpreter that has torch:
Debian's /usr/bin/python3 with python3-torch 1.13): zip checkpoints (torch.save), legacy
checkpoints (_use_new_zipfile_serialization=False) and TorchScript archives (torch.jit.save).

    /usr/bin/python3 torch_seeds.py OUTDIR
"""
import collections
import os
import sys

import torch


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)

    def forward(self, x):
        return torch.relu(self.lin(x)) * 2


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    objs = {
        "tensor": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "state_dict": Small().state_dict(),
        "nested": {"epoch": 3, "opt": {"lr": 0.1}, "w": [torch.zeros(2), torch.ones(1, dtype=torch.int64)]},
        "views": (lambda t: {"a": t, "b": t[1:]})(torch.arange(8.0)),
        "ordered": collections.OrderedDict(w=torch.eye(2), b=torch.tensor([1.5])),
    }
    for name, o in objs.items():
        torch.save(o, os.path.join(out, f"zip-{name}.pt"))
        torch.save(o, os.path.join(out, f"legacy-{name}.pt"), _use_new_zipfile_serialization=False)
    m = torch.jit.script(Small())
    torch.jit.save(m, os.path.join(out, "jit-script.pt"))
    t = torch.jit.trace(Small(), torch.zeros(1, 3))
    torch.jit.save(t, os.path.join(out, "jit-trace.pt"))


if __name__ == "__main__":
    main()
