#!/usr/bin/env python3
"""Generate stdlib.rs: one verdict per module of CPython's standard library, for pickle imports.

    python3 src/lists/gen_stdlib.py \\
        --python ~/.pyenv/versions/3.12.1/bin/python3 --python ~/.pyenv/versions/3.13.0/bin/python3 \\
        > src/lists/stdlib.rs
    python3 src/lists/gen_stdlib.py --report [--python ...]     # every finding, for the reviewer

The build never needs Python: stdlib.rs is committed. Re-run this on a new CPython (give it as
--python, or run the script with it) and review the diff of stdlib.rs.

Why. `pickle.Unpickler.find_class(module, name)` imports `module` (running its import-time code)
and walks `name` attribute by attribute, so a pickle can call every module-level callable of every
importable module, and every method of its classes. What the standard library offers is a closed
world: it can be read once.

What this script does, for each module of `sys.stdlib_module_names` (of the interpreter running it
and of every --python one), the names CPython 3.14 added (EXTRA_NAMES), every other importable
top-level entry of the library directory, and the Python 2 names `_compat_pickle` maps:

  * it reads the module's source (every submodule of a package too) WITHOUT importing it, parses it
    with that interpreter's `ast`, and lists its public and private callables (functions, classes,
    methods, nested functions) and its import-time code (`if __name__ == "__main__":` blocks never
    run on import and are left out);
  * it scans each callable for the primitives a gadget needs (PRIMITIVES): evaluating or compiling
    code (`eval`, `exec`, `compile`, function and code objects, `marshal`/`pickle` loads), importing
    (`__import__`, `importlib`, `sys.modules`), processes, threads and exits (`os.system`,
    `subprocess`, `pty`, `sys.exit`, ...), native code (`ctypes`), files (`open`, `io.open`,
    `os.remove`, `shutil`, `tempfile`, ...), the network (`socket`, `urllib`, `http.client`, ...),
    arbitrary attributes or namespaces (`getattr`/`setattr`/`delattr` with a computed name,
    `globals()`, `vars()`, frames), and calling an argument (a parameter called directly, through an
    alias, stored on `self` and called later, or handed to `map`/`filter`/`sorted(key=)`/`reduce`/
    `Thread(target=)`/... (CALL_TAKERS)). A primitive counts when it is used, not when it is only
    compared or tested with `isinstance`. Import-time code counts only for what it does (code,
    imports, processes, files, network), since it runs with no attacker input;
  * a name re-exported from another module (`from M import f`, `x = M.f`, `from M import *`) or a
    class whose base comes from another module is as risky as what it points at (resolved across
    modules; a native module's names are as risky as its reviewed verdict);
  * the module is DANGEROUS when any of its callables (or its import-time code) has a primitive,
    with the first example of each kind as the reason, and INERT otherwise;
  * native modules (no Python source) cannot be scanned: their verdict comes from the override
    file, and a native module without an override is DANGEROUS ("not reviewed"): the table fails
    closed. Modules absent here (Windows-only, 3.14-only) are treated the same way;
  * `stdlib_overrides.txt` (hand-written, one reason per line) is applied last;
  * each Python 2 name gets the worst verdict of the modules `_compat_pickle` maps it to.

A package gets one line: the worst verdict over its `__init__` and every submodule (a pickle can
name any of them, and a package attribute reaches a submodule once anything imported it).
Standard library only. Nothing is imported but native modules (to list their callables in --report).
"""

import argparse
import ast
import json
import os
import subprocess
import sys
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))
OVERRIDES = os.path.join(HERE, "stdlib_overrides.txt")

# Names CPython 3.14 added to sys.stdlib_module_names (Python/stdlib_module_names.h of the 3.14
# branch) that no interpreter here lists; their verdicts come from the override file unless this
# script runs under 3.14 itself.
EXTRA_NAMES = {
    "3.14": ["_hmac", "annotationlib", "_remote_debugging", "_zstd", "compression", "_types", "_apple_support"],
}

# Not scanned (very large, dangerous by design): the override gives the verdict.
SKIP_SCAN = {"test"}

# Order of the kinds in reasons, most severe first. Import-time code counts only for IMPORT_KINDS.
KINDS = ["code", "import", "process", "native", "file", "network", "reach", "call", "exposes"]
IMPORT_KINDS = {"code", "import", "process", "native", "file", "network"}
KIND_TEXT = {
    "code": "evaluates or compiles code",
    "import": "imports modules",
    "process": "runs processes, threads or exits",
    "native": "calls native code",
    "file": "opens, writes or deletes files",
    "network": "reaches the network",
    "reach": "reaches arbitrary attributes or namespaces",
    "call": "calls a callable it is given",
    "exposes": "exposes a dangerous name of a native module",
}

# Risky primitives: dotted targets (after resolving imports). "x.*" covers x and everything below
# it, "x.y*" every name of x starting with y. Builtins are written "builtins.NAME".
PRIMITIVES = {
    "code": """
        builtins.eval builtins.exec builtins.compile builtins.execfile
        types.FunctionType types.CodeType types.LambdaType types.new_class types.MethodType
        marshal.load marshal.loads pickle.load pickle.loads pickle.Unpickler pickle._Unpickler
        pickle._load pickle._loads _pickle.* cPickle.* code.* codeop.* runpy.* py_compile.compile
        compileall.* shelve.open dis.* pdb.* bdb.* doctest.* timeit.* trace.* cProfile.* profile.*
        ast.parse _ast.*
    """,
    "import": """
        builtins.__import__ importlib.* imp.* zipimport.* pkgutil.resolve_name pkgutil.find_loader
        pkgutil.get_loader pkgutil.iter_modules pkgutil.walk_packages pkgutil.get_data
        sys.modules sys.meta_path sys.path_hooks sys.path_importer_cache _imp.* _frozen_importlib.*
        _frozen_importlib_external.* pydoc.locate pydoc.importfile
    """,
    "process": """
        os.system os.popen os.exec* os.spawn* os.fork* os.kill* os.posix_spawn* os.startfile
        os.abort os._exit os.plock os.wait* posix.* nt.* subprocess.*
        _posixsubprocess.* pty.* multiprocessing.* _multiprocessing.* concurrent.futures.*
        threading.Thread threading.Timer _thread.start_new_thread _thread.start_new
        _thread.interrupt_main signal.signal signal.alarm signal.setitimer signal.pthread_kill
        signal.raise_signal _signal.* atexit.register sys.exit builtins.exit builtins.quit
        webbrowser.* asyncio.create_subprocess_exec asyncio.create_subprocess_shell _winapi.*
        msvcrt.* _bootsubprocess.* sys.settrace sys.setprofile sys.addaudithook threading.settrace
        threading.setprofile faulthandler.* resource.setrlimit resource.prlimit
    """,
    "native": "ctypes.* _ctypes.*",
    "file": """
        builtins.open io.open io.FileIO io.open_code _io.open _io.FileIO _io.open_code _pyio.open
        _pyio.FileIO codecs.open os.open os.fdopen os.remove os.unlink os.rmdir os.removedirs
        os.rename os.renames os.replace os.mkdir os.makedirs os.chmod os.lchmod os.fchmod os.chown
        os.lchown os.fchown os.link os.symlink os.truncate os.ftruncate os.write os.writev os.pwrite
        os.read os.readv os.pread os.sendfile os.listdir os.scandir os.walk os.fwalk os.chdir
        os.fchdir os.chroot os.mkfifo os.mknod os.utime os.dup os.dup2 os.setxattr os.removexattr
        os.getxattr os.listxattr os.copy_file_range os.splice os.memfd_create os.putenv os.unsetenv
        os.close os.closerange os.set_blocking os.set_inheritable os.lseek os.fsync os.openpty
        shutil.* tempfile.* glob.* fileinput.* linecache.getline linecache.getlines
        linecache.updatecache linecache.checkcache linecache.lazycache tokenize.open gzip.open
        gzip.GzipFile bz2.open bz2.BZ2File lzma.open lzma.LZMAFile tarfile.open tarfile.TarFile
        zipfile.ZipFile dbm.open dbm.*.open sqlite3.connect _sqlite3.* mmap.* mailbox.* netrc.netrc
        wave.open configparser.ConfigParser.read logging.FileHandler logging.handlers.*
        logging.config.* mimetypes.read_mime_types mimetypes.init filecmp.* zipapp.* http.server.*
        termios.* fcntl.* tty.* _io.open termios.tcsetattr pathlib.Path.* pathlib.PosixPath.*
    """,
    "network": """
        socket.* _socket.* ssl.* _ssl.* http.client.* urllib.request.* ftplib.* smtplib.* poplib.*
        imaplib.* nntplib.* telnetlib.* xmlrpc.client.* xmlrpc.server.* socketserver.*
        asyncio.open_connection asyncio.start_server asyncio.open_unix_connection
        asyncio.start_unix_server select.* selectors.*
    """,
    "reach": """
        builtins.globals builtins.vars builtins.locals builtins.__builtins__ builtins.breakpoint
        sys._getframe sys._current_frames sys.exc_info inspect.currentframe inspect.stack
        inspect.trace gc.get_objects gc.get_referrers gc.get_referents operator.attrgetter
        operator.methodcaller _operator.attrgetter _operator.methodcaller
    """,
}

# Callables that call (or store to call later) the argument at these positions / keywords.
CALL_TAKERS = {
    "builtins.map": ([0], []),
    "builtins.filter": ([0], []),
    "builtins.sorted": ([], ["key"]),
    "builtins.min": ([], ["key"]),
    "builtins.max": ([], ["key"]),
    "functools.reduce": ([0], []),
    "_functools.reduce": ([0], []),
    "functools.partial": ([0], []),
    "functools.partialmethod": ([0], []),
    "functools.cmp_to_key": ([0], []),
    "itertools.starmap": ([0], []),
    "itertools.accumulate": ([1], ["func"]),
    "itertools.groupby": ([1], ["key"]),
    "itertools.filterfalse": ([0], []),
    "itertools.takewhile": ([0], []),
    "itertools.dropwhile": ([0], []),
    "collections.defaultdict": ([0], []),
    "threading.Thread": ([], ["target"]),
    "threading.Timer": ([1], ["function"]),
    "atexit.register": ([0], []),
    "os.register_at_fork": ([], ["before", "after_in_child", "after_in_parent"]),
    "weakref.finalize": ([1], []),
    "weakref.ref": ([1], []),
    "signal.signal": ([1], []),
    "sys.settrace": ([0], []),
    "sys.setprofile": ([0], []),
    "copyreg.pickle": ([1], []),
    "heapq.nsmallest": ([], ["key"]),
    "heapq.nlargest": ([], ["key"]),
    "heapq.merge": ([], ["key"]),
    "bisect.bisect": ([], ["key"]),
    "bisect.bisect_left": ([], ["key"]),
    "bisect.bisect_right": ([], ["key"]),
    "bisect.insort": ([], ["key"]),
    "bisect.insort_left": ([], ["key"]),
    "bisect.insort_right": ([], ["key"]),
}
# `x.sort(key=p)` on any object.
METHOD_KEYWORDS = {"sort": ["key"]}
# Dunder methods called on an argument that construct, initialise or call it.
CALL_DUNDERS = {"__call__", "__new__", "__init__", "__init_subclass__", "__class_getitem__"}
# Builtins whose name alone is the primitive (when not shadowed by a module-level name).
BUILTIN_NAMES = {"eval", "exec", "compile", "execfile", "__import__", "open", "globals", "vars",
                 "locals", "breakpoint", "exit", "quit", "__builtins__", "getattr", "setattr",
                 "delattr", "map", "filter", "sorted", "min", "max", "iter", "isinstance", "issubclass"}
# Calls whose arguments are only tested, never used.
TESTS = {"builtins.isinstance", "builtins.issubclass", "builtins.id", "builtins.hasattr"}


def parse_patterns():
    exact, prefix, star = {}, [], []
    for kind, text in PRIMITIVES.items():
        for p in text.split():
            if p.endswith(".*"):
                prefix.append((p[:-2], kind))
            elif p.endswith("*"):
                star.append((p[:-1], kind))
            else:
                exact[p] = kind
    return exact, prefix, star


EXACT, PREFIX, STAR = parse_patterns()


def primitive_kind(target):
    """The kind of a dotted target, or None."""
    if target in EXACT:
        return EXACT[target]
    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):
        if ".".join(parts[:i]) in EXACT:  # an attribute of a risky callable (os.system.__call__)
            return EXACT[".".join(parts[:i])]
    for p, kind in PREFIX:
        if target == p or target.startswith(p + "."):
            return kind
    for p, kind in STAR:
        if target.startswith(p) and "." not in target[len(p):]:
            return kind
    return None


def fixed_prefix(node):
    """An attribute name that is a constant, or starts with a constant that is no `_`/`__`
    (`"visit_" + kind`, f"do_{cmd}"): it reaches only names of that family."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return fixed_prefix_str(node.left)
    if isinstance(node, ast.JoinedStr) and node.values:
        return fixed_prefix_str(node.values[0])
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return fixed_prefix_str(node.left) and not node.left.value.startswith("%")
    return False


def fixed_prefix_str(node):
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return fixed_prefix_str(node.left)
    return (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.strip("_") != ""
            and not node.value.startswith("__"))


def assigned_names(func):
    """Names a function binds by assignment, loops, with and except (not its nested functions)."""
    out = set()
    todo = list(func.body)
    while todo:
        n = todo.pop()
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            out.add(n.id)
        todo.extend(ast.iter_child_nodes(n))
    return out


def is_main_guard(node):
    """`if __name__ == "__main__":`"""
    t = node.test
    return (isinstance(node, ast.If) and isinstance(t, ast.Compare) and isinstance(t.left, ast.Name)
            and t.left.id == "__name__" and len(t.comparators) == 1
            and isinstance(t.comparators[0], ast.Constant) and t.comparators[0].value == "__main__")


# ---------------------------------------------------------------------------------------------
# scanning one source file


class FileInfo:
    def __init__(self, modname, is_pkg):
        self.modname = modname
        self.is_pkg = is_pkg
        self.hits = []         # (qualname or "<import>", kind, what)
        self.defs = set()      # top-level functions and classes
        self.bases = {}        # class qualname -> [dotted base targets outside the module]
        self.local_bases = {}  # class qualname -> [local class names]
        self.exports = {}      # top-level name -> dotted target it is bound to (imports, aliases)
        self.stars = []        # modules star-imported at top level
        self.callables = 0


class Scanner(ast.NodeVisitor):
    """Fills a FileInfo from one module's AST."""

    def __init__(self, info):
        self.info = info
        mod = info.modname
        self.package = mod if info.is_pkg else mod.rpartition(".")[0]
        self.aliases = {}        # name -> dotted target (every import of the file)
        self.defined = set()     # module-level names that shadow builtins
        self.scope = []          # qualname parts
        self.kinds = []          # "def" / "class" per scope part
        self.params = [set()]    # parameters (and their aliases) of the enclosing function
        self.locals = [set()]    # names the enclosing function assigns (shadowing builtins and imports)
        self.stored = {}         # class qualname -> self attributes assigned from a parameter
        self.quiet = 0           # > 0 inside tests (isinstance, comparisons, subscripts, keys)

    # --- imports and names

    def resolve_from(self, node):
        if node.level:
            base = self.package.split(".") if self.package else []
            if node.level > 1:
                base = base[: len(base) - (node.level - 1)]
            return ".".join(base + ([node.module] if node.module else []))
        return node.module or ""

    def top_level_statements(self, body):
        """Statements that run at import, through if/try/with blocks (not `__main__` blocks)."""
        for node in body:
            if isinstance(node, ast.If):
                if is_main_guard(node):
                    continue
                yield node
                yield from self.top_level_statements(node.body)
                yield from self.top_level_statements(node.orelse)
            elif isinstance(node, ast.Try):
                yield node
                for b in (node.body, node.orelse, node.finalbody):
                    yield from self.top_level_statements(b)
                for h in node.handlers:
                    yield from self.top_level_statements(h.body)
            elif isinstance(node, ast.With):
                yield node
                yield from self.top_level_statements(node.body)
            else:
                yield node

    def collect(self, tree):
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        self.aliases[a.asname] = a.name
                    else:
                        root = a.name.split(".")[0]
                        self.aliases.setdefault(root, root)
            elif isinstance(node, ast.ImportFrom):
                mod = self.resolve_from(node)
                for a in node.names:
                    if a.name != "*":
                        self.aliases[a.asname or a.name] = f"{mod}.{a.name}" if mod else a.name
        info = self.info
        for node in self.top_level_statements(tree.body):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.defined.add(node.name)
                info.defs.add(node.name)
                info.exports.pop(node.name, None)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname and a.asname != a.name.rpartition(".")[2]:
                        info.exports[a.asname] = a.name  # a module under another name
            elif isinstance(node, ast.ImportFrom):
                mod = self.resolve_from(node)
                for a in node.names:
                    if a.name == "*":
                        info.stars.append(mod)
                    else:
                        info.exports[a.asname or a.name] = f"{mod}.{a.name}"
                        self.defined.add(a.asname or a.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if isinstance(t, ast.Name):
                        self.defined.add(t.id)
                        target = self.dotted(node.value) if node.value is not None else None
                        if target is not None:
                            info.exports[t.id] = target
                        else:
                            info.exports.pop(t.id, None)

    def where(self):
        return ".".join(self.scope) if self.scope else "<import>"

    def at_import(self):
        return "def" not in self.kinds

    def hit(self, kind, what):
        if self.at_import() and kind not in IMPORT_KINDS:
            return
        self.info.hits.append((self.where(), kind, what))

    def dotted(self, node):
        """`a.b.c` with its root resolved (imports, builtins), or None."""
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        root = node.id
        if root in self.params[-1] or root in self.locals[-1]:
            return None  # a parameter or local variable, not the module or builtin of that name
        if root in self.aliases:
            base = self.aliases[root]
        elif root in ("builtins", "__builtin__"):
            base = "builtins"
        elif root in BUILTIN_NAMES and root not in self.defined:
            base = "builtins." + root
        else:
            return None
        return ".".join([base] + list(reversed(parts)))

    def check_ref(self, node, called):
        if self.quiet and not called:
            return
        target = self.dotted(node)
        if target is None:
            return
        kind = primitive_kind(target)
        if kind is None:
            return
        show = target[len("builtins."):] if target.startswith("builtins.") else target
        if not called and self.at_import():
            return  # a reference at import time does nothing by itself
        self.hit(kind, show)

    # --- visitors

    def visit_If(self, node):
        if not self.scope and is_main_guard(node):
            return  # never runs on import
        self.generic_visit(node)

    def visit_Import(self, node):
        pass

    def visit_ImportFrom(self, node):
        pass

    def func(self, node, is_lambda=False):
        args = node.args
        params = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
        if args.vararg:
            params.append(args.vararg.arg)
        if args.kwarg:
            params.append(args.kwarg.arg)
        if not is_lambda and self.kinds and self.kinds[-1] == "class" and params:
            static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)
            if not static:
                params = params[1:]  # self / cls
        if not is_lambda:
            for d in node.decorator_list:
                self.visit(d)
        for d in args.defaults + args.kw_defaults:
            if d is not None:
                self.visit(d)
        # closures see the parameters of the functions around them (decorators, combinators)
        outer = self.params[-1] if (is_lambda or "def" in self.kinds) else set()
        self.params.append(set(params) | outer)
        if not is_lambda:
            self.scope.append(node.name)
            self.kinds.append("def")
            self.info.callables += 1
        if is_lambda:
            self.visit(node.body)
        else:
            self.alias_params(node)
            self.locals.append(assigned_names(node))
            for stmt in node.body:
                self.visit(stmt)
            self.locals.pop()
            self.scope.pop()
            self.kinds.pop()
        self.params.pop()

    def alias_params(self, node):
        """`f = param` (or `param or default`, `a if c else param`) makes f a parameter too."""
        ps = self.params[-1]
        changed = True
        while changed:
            changed = False
            for n in ast.walk(node):
                if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
                    v = n.value
                    vals = v.values if isinstance(v, ast.BoolOp) else [v.body, v.orelse] if isinstance(v, ast.IfExp) else [v]
                    name = n.targets[0].id
                    if name not in ps and any(isinstance(x, ast.Name) and x.id in ps for x in vals):
                        ps.add(name)
                        changed = True

    def visit_FunctionDef(self, node):
        self.func(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node):
        self.func(node, is_lambda=True)

    def visit_ClassDef(self, node):
        for d in node.decorator_list + node.bases + [k.value for k in node.keywords]:
            self.visit(d)
        self.scope.append(node.name)
        self.kinds.append("class")
        self.info.callables += 1
        qual = ".".join(self.scope)
        for b in node.bases:
            target = self.dotted(b)
            if target and not target.startswith("builtins."):
                self.info.bases.setdefault(qual, []).append(target)
            elif isinstance(b, ast.Name) and b.id not in self.aliases:
                self.info.local_bases.setdefault(qual, []).append(b.id)
        stored = set()
        for n in ast.walk(node):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                ps = {a.arg for a in n.args.posonlyargs + n.args.args + n.args.kwonlyargs}
                ps.discard("self")
                for m in ast.walk(n):
                    if isinstance(m, ast.Assign):
                        v = m.value
                        vals = v.values if isinstance(v, ast.BoolOp) else [v.body, v.orelse] if isinstance(v, ast.IfExp) else [v]
                        if not any(isinstance(x, ast.Name) and x.id in ps for x in vals):
                            continue
                        for t in m.targets:
                            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                                stored.add(t.attr)
        self.stored[qual] = stored
        for stmt in node.body:
            self.visit(stmt)
        self.scope.pop()
        self.kinds.pop()

    def class_stored(self):
        for i in range(len(self.scope), 0, -1):
            if self.kinds[i - 1] == "class":
                return self.stored.get(".".join(self.scope[:i]), set())
        return set()

    def visit_Call(self, node):
        f = node.func
        params = self.params[-1]
        target = self.dotted(f)
        if target in ("builtins.getattr", "builtins.setattr", "builtins.delattr"):
            if len(node.args) >= 2 and not fixed_prefix(node.args[1]):
                self.hit("reach", f"{target[9:]} with a computed name")
        if isinstance(f, ast.Name) and f.id in params:
            self.hit("call", f"calls its argument {f.id}")
        elif isinstance(f, ast.Subscript) and isinstance(f.value, ast.Name) and f.value.id in params:
            self.hit("call", f"calls an item of its argument {f.value.id}")
        elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            if f.value.id in params and f.attr in CALL_DUNDERS:
                self.hit("call", f"calls {f.value.id}.{f.attr}")
            elif f.value.id == "self" and f.attr in self.class_stored():
                self.hit("call", f"calls self.{f.attr}, a callable it was given")
        taker = CALL_TAKERS.get(target) if target else None
        if target == "builtins.iter" and len(node.args) == 2:
            taker = ([0], [])  # iter(callable, sentinel)
        if taker is None and isinstance(f, ast.Attribute) and f.attr in METHOD_KEYWORDS:
            taker = ([], METHOD_KEYWORDS[f.attr])
        if taker:
            positions, keywords = taker
            handed = [node.args[i] for i in positions if i < len(node.args)]
            handed += [k.value for k in node.keywords if k.arg in keywords]
            for h in handed:
                if isinstance(h, ast.Name) and h.id in params:
                    self.hit("call", f"hands its argument {h.id} to {target or f.attr}")
        # the callee is used; the arguments of a test are not
        if isinstance(f, (ast.Attribute, ast.Name)):
            self.check_ref(f, called=True)
            if isinstance(f, ast.Attribute):
                self.visit_chain_base(f)
        else:
            self.visit(f)
        quiet = target in TESTS
        self.quiet += quiet
        for a in node.args:
            self.visit(a)
        for k in node.keywords:
            self.visit(k.value)
        self.quiet -= quiet

    def visit_chain_base(self, node):
        base = node
        while isinstance(base, ast.Attribute):
            base = base.value
        if not isinstance(base, ast.Name):
            self.visit(base)

    def visit_Attribute(self, node):
        self.check_ref(node, called=False)
        self.visit_chain_base(node)

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load):
            self.check_ref(node, called=False)

    def visit_Subscript(self, node):
        target = self.dotted(node.value)
        if target in ("sys.modules",):
            s = node.slice
            fixed = isinstance(s, ast.Constant) or (isinstance(s, ast.Name) and s.id == "__name__")
            if not fixed and not self.at_import():
                self.hit("import", "sys.modules[...] with a computed name")
        else:
            self.visit(node.value)
        self.quiet += 1
        self.visit(node.slice)
        self.quiet -= 1

    def visit_Compare(self, node):
        self.quiet += 1
        self.generic_visit(node)
        self.quiet -= 1

    def visit_Dict(self, node):
        self.quiet += 1
        for k in node.keys:
            if k is not None:
                self.visit(k)
        self.quiet -= 1
        for v in node.values:
            self.visit(v)

    def visit_ExceptHandler(self, node):
        for stmt in node.body:
            self.visit(stmt)

    def visit_arg(self, node):
        pass  # annotations

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self.visit(node.value)

    def run(self, tree):
        self.collect(tree)
        for stmt in tree.body:
            self.visit(stmt)


# ---------------------------------------------------------------------------------------------
# one interpreter: scan every file, then resolve re-exports and inherited classes


def module_files(lib, name):
    """(module name, path, is_package) for a top-level name and all its submodules."""
    single = os.path.join(lib, name + ".py")
    if os.path.isfile(single):
        return [(name, single, False)]
    root = os.path.join(lib, name)
    if not os.path.isdir(root):
        return []
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        rel = os.path.relpath(dirpath, lib).replace(os.sep, ".")
        for fn in sorted(filenames):
            if not fn.endswith(".py"):
                continue
            if fn == "__init__.py":
                out.append((rel, os.path.join(dirpath, fn), True))
            else:
                out.append((rel + "." + fn[:-3], os.path.join(dirpath, fn), False))
    return out


class Resolver:
    """Is a name of a module risky? Follows re-exports, star imports and base classes."""

    def __init__(self, files, native_verdict):
        self.files = files                    # modname -> FileInfo
        self.native_verdict = native_verdict  # top-level name -> "dangerous"/"inert"/None
        self.memo = {}

    def split(self, dotted):
        """`a.b.c.d` -> (longest known module, rest) or (None, None)."""
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):
            mod = ".".join(parts[:i])
            if mod in self.files or (i == 1 and mod in self.native_verdict):
                return mod, ".".join(parts[i:])
        return None, None

    def dotted_risk(self, dotted, depth):
        kind = primitive_kind(dotted)
        if kind:
            return kind, dotted
        mod, rest = self.split(dotted)
        if mod is None:
            return None
        if not rest:
            return self.module_risk(mod, depth)
        return self.name_risk(mod, rest.split(".")[0], depth)

    def module_risk(self, mod, depth):
        if mod not in self.files:
            v = self.native_verdict.get(mod.split(".")[0], ("dangerous", "", None))
            return ("exposes", f"{mod}: {v[1] or 'not reviewed'}") if v[0] != "inert" else None
        info = self.files[mod]
        for q, k, w in info.hits:
            return k, f"{mod}.{q}: {w}"
        return None

    def name_risk(self, mod, name, depth=0):
        key = (mod, name)
        if key in self.memo:
            return self.memo[key]
        if depth > 30:
            return None
        self.memo[key] = None  # cycle guard
        r = self._name_risk(mod, name, depth + 1)
        self.memo[key] = r
        return r

    def _name_risk(self, mod, name, depth):
        if mod not in self.files:
            verdict, reason, risky = self.native_verdict.get(mod.split(".")[0], ("dangerous", "", None))
            if verdict == "inert" or (risky is not None and name not in risky):
                return None
            return "exposes", f"{mod}.{name}: {reason or 'not reviewed'}"
        info = self.files[mod]
        for q, k, w in info.hits:
            if q == name or q.startswith(name + "."):
                return k, f"{mod}.{q}: {w}"
        for qual, bases in info.bases.items():
            if qual == name or qual.startswith(name + "."):
                for b in bases:
                    r = self.dotted_risk(b, depth)
                    if r:
                        return r[0], f"{mod}.{qual} inherits {b}: {r[1]}"
        for qual, bases in info.local_bases.items():
            if qual == name:
                for b in bases:
                    if b != name and b in info.defs:
                        r = self.name_risk(mod, b, depth)
                        if r:
                            return r
        if name in info.exports:
            return self.dotted_risk(info.exports[name], depth)
        sub = f"{mod}.{name}"
        if sub in self.files:
            return self.module_risk(sub, depth)
        if name not in info.defs:
            for star in info.stars:
                r = self.name_risk(star, name, depth) if star in self.files else self.module_risk(star, depth)
                if r:
                    return r
        return None

    def extra_hits(self, mod):
        """Hits a file gets from what it re-exports and inherits."""
        info = self.files[mod]
        out = []
        for name, target in sorted(info.exports.items()):
            r = self.dotted_risk(target, 0)
            if r:
                out.append(("<import>", r[0], f"binds {name} to {target} ({r[1]})"))
        for star in info.stars:
            r = self.module_risk(star, 0)
            if r:
                out.append(("<import>", r[0], f"re-exports everything of {star} ({r[1]})"))
        for qual, bases in sorted(info.bases.items()):
            for b in bases:
                r = self.dotted_risk(b, 0)
                if r:
                    out.append((qual, r[0], f"inherits {b} ({r[1]})"))
        return out


def scan_interpreter(overrides):
    """This interpreter's library: {name: {kind, hits, callables, files}} as JSON-able data."""
    lib = sysconfig.get_paths()["stdlib"]
    dyn = os.path.join(lib, "lib-dynload")
    dyn_names = set()
    if os.path.isdir(dyn):
        dyn_names = {f.split(".")[0] for f in os.listdir(dyn) if f.endswith((".so", ".pyd"))}
    names = set(sys.stdlib_module_names)
    for entry in os.listdir(lib):  # every other importable top-level entry (e.g. _bootsubprocess)
        if entry in ("site-packages", "lib-dynload", "__pycache__") or entry.startswith("config-"):
            continue
        path = os.path.join(lib, entry)
        if entry.endswith(".py") and entry[:-3].isidentifier():
            names.add(entry[:-3])
        elif os.path.isdir(path) and entry.isidentifier() and os.path.isfile(os.path.join(path, "__init__.py")):
            names.add(entry)
    files, tops, result = {}, {}, {}
    for name in sorted(names):
        if name in SKIP_SCAN:
            result[name] = {"kind": "skipped", "hits": [], "callables": 0}
            continue
        paths = module_files(lib, name)
        if not paths:
            native = name in sys.builtin_module_names or name in dyn_names
            result[name] = {"kind": "native" if native else "absent", "hits": [], "callables": 0,
                            "names": native_names(name) if native else []}
            continue
        tops[name] = []
        for modname, path, is_pkg in paths:
            try:
                with open(path, "rb") as f:
                    tree = ast.parse(f.read(), filename=path)
            except (SyntaxError, ValueError):
                continue  # not importable either (test data in Python 2 syntax)
            info = FileInfo(modname, is_pkg)
            Scanner(info).run(tree)
            files[modname] = info
            tops[name].append(modname)
    native_verdict = {n: overrides.get(n, ("dangerous", "", None)) for n, r in result.items()}
    resolver = Resolver(files, native_verdict)
    for name, mods in tops.items():
        hits, ncall = [], 0
        for modname in mods:
            info = files[modname]
            ncall += info.callables
            hits += [(modname, q, k, w) for q, k, w in info.hits + resolver.extra_hits(modname)]
        result[name] = {"kind": "source", "hits": hits, "callables": ncall}
    return {"version": "%d.%d.%d" % sys.version_info[:3], "modules": result}


def native_names(name):
    """Public and private callables of a native module (importing a C module runs no Python)."""
    import warnings

    warnings.simplefilter("ignore")
    try:
        mod = __import__(name)
    except Exception:  # noqa: BLE001 - some need a platform
        return []
    return sorted(n for n in dir(mod) if callable(getattr(mod, n, None)))


# ---------------------------------------------------------------------------------------------
# merging, overrides, output


def read_overrides():
    out = {}
    with open(OVERRIDES, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 2)
            if len(parts) < 3 or parts[1] not in ("dangerous", "inert"):
                sys.exit(f"{OVERRIDES}:{lineno}: expected `module dangerous|inert reason`")
            if parts[0] in out:
                sys.exit(f"{OVERRIDES}:{lineno}: {parts[0]} overridden twice")
            reason, risky = parts[2], None
            if reason.endswith("}") and "{risky:" in reason:
                reason, _, names = reason.rpartition("{risky:")
                reason, risky = reason.rstrip(), names[:-1].split()
                if parts[1] != "dangerous":
                    sys.exit(f"{OVERRIDES}:{lineno}: a risky-name list on an inert module")
            out[parts[0]] = (parts[1], reason, risky)
    return out


def summarize(hits, limit=3):
    """One reason from the hits: per kind, the first example and how many more places."""
    by_kind = {}
    for modname, qual, kind, what in hits:
        by_kind.setdefault(kind, []).append((modname, qual, what))
    def indirect(item):
        return item[2].startswith(("binds ", "re-exports ", "inherits "))

    # kinds the module's own code shows come first (most severe first), then those it only
    # reaches through a name it binds, re-exports or inherits
    order = sorted((k for k in KINDS if k in by_kind), key=lambda k: (all(indirect(i) for i in by_kind[k]), KINDS.index(k)))
    parts = []
    for kind in order:
        items = by_kind[kind]
        # prefer an example in a function of the module itself over an import-time binding
        items.sort(key=lambda t: (indirect(t), t[1] == "<import>", t[0].count(".")))
        modname, qual, what = items[0]
        place = f"{modname}.{qual}" if qual != "<import>" else f"{modname} at import"
        more = f", {len(items) - 1} more" if len(items) > 1 else ""
        parts.append(f"{KIND_TEXT[kind]} ({place}: {what}{more})")
        if len(parts) >= limit:
            break
    rest = order[limit:]
    if rest:
        parts.append("also " + ", ".join(KIND_TEXT[k] for k in rest))
    return "; ".join(parts)


def merge(scans):
    merged = {}
    for scan in scans:
        v = scan["version"].rsplit(".", 1)[0]
        for name, info in scan["modules"].items():
            m = merged.setdefault(name, {"versions": [], "hits": [], "kinds": set(), "native": [], "callables": 0})
            m["versions"].append(v)
            m["kinds"].add(info["kind"])
            m["callables"] = max(m["callables"], info["callables"])
            m["native"] = sorted(set(m["native"]) | set(info.get("names", [])))
            seen = set(m["hits"])
            for h in info["hits"]:
                h = tuple(h)
                if h not in seen:
                    m["hits"].append(h)
                    seen.add(h)
    return merged


def versions_text(vs):
    vs = sorted(set(vs), key=lambda v: tuple(int(x) for x in v.split(".")))
    if len(vs) == 1:
        return vs[0]
    return f"{vs[0]}-{vs[-1]}" if len(vs) > 2 else f"{vs[0]}, {vs[1]}"


def py2_names():
    """Python 2 top-level name -> Python 3 modules `_compat_pickle` maps its names to."""
    import _compat_pickle as c

    out = {}
    for old, new in c.IMPORT_MAPPING.items():
        out.setdefault(old.split(".")[0], set()).add(new)
    for (old, _), (new, _) in c.NAME_MAPPING.items():
        out.setdefault(old.split(".")[0], set()).add(new)
    return out


def verdicts(scans, overrides):
    merged = merge(scans)
    scanned = {s["version"].rsplit(".", 1)[0] for s in scans}
    for ver, names in EXTRA_NAMES.items():
        if ver not in scanned:
            for n in names:
                m = merged.setdefault(n, {"versions": [], "hits": [], "kinds": set(), "native": [], "callables": 0})
                m["versions"].append(ver)
                m["kinds"].add("unscanned")
    table, problems = {}, []
    for name, m in sorted(merged.items()):
        vers = versions_text(m["versions"])
        if name in overrides:
            verdict, reason, _ = overrides[name]
            if verdict == "inert" and m["hits"]:
                reason += f" [reviewed; the scan found: {summarize(m['hits'], 2)}]"
            else:
                reason += " [reviewed]"
        elif m["hits"]:
            verdict, reason = "dangerous", summarize(m["hits"])
        elif m["kinds"] <= {"source"}:
            verdict = "inert"
            reason = f"no risky primitive in its {m['callables']} callables or its import-time code"
        else:
            verdict = "dangerous"
            what = "native" if "native" in m["kinds"] else "unscanned"
            reason = f"{what} module without a review in stdlib_overrides.txt: treated as dangerous"
            problems.append(f"{name}: {what}, no override")
        table[name] = (verdict, f"{reason} ({vers})", False)
    py2 = py2_names()
    for name, (verdict, reason, _) in overrides.items():
        if name.startswith("py2:"):
            table[name[4:]] = (verdict, reason + " [reviewed]", True)
        elif name not in table and name not in py2:
            problems.append(f"override for {name}, which is no module of any scanned or listed version")
    for old, targets in sorted(py2.items()):
        if old in table:
            continue  # also a Python 3 name: its own line stands
        if old in overrides:
            verdict, reason, _ = overrides[old]
            table[old] = (verdict, reason + " [reviewed] (Python 2)", True)
            continue
        bad = [t for t in sorted(targets) if table.get(t.split(".")[0], ("dangerous",))[0] == "dangerous"]
        mapped = ", ".join(sorted(targets))
        if bad:
            reason = f"Python 2 name that _compat_pickle maps to {mapped}; dangerous as {bad[0].split('.')[0]} is"
        else:
            reason = f"Python 2 name that _compat_pickle maps to {mapped}"
        table[old] = ("dangerous" if bad else "inert", reason, True)
    return table, problems


def lit(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def emit(table, scans):
    vers = ", ".join(s["version"] for s in scans)
    scanned = {s["version"].rsplit(".", 1)[0] for s in scans}
    extra = ", ".join(v for v in EXTRA_NAMES if v not in scanned)
    out = [
        f"//! Generated by gen_stdlib.py from CPython {vers} (with the names of {extra} and of Python 2)",
        "//! and stdlib_overrides.txt; do not edit: fix the script or the overrides, re-run it, review the diff.",
        "//! One line per top-level module: (name, verdict, Python 2 name only, reason); sorted by name.",
        "",
        "use super::StdlibVerdict::{Dangerous, Inert};",
        "",
        "#[rustfmt::skip]",
        "pub(super) static STDLIB: &[(&str, super::StdlibVerdict, bool, &str)] = &[",
    ]
    for name in sorted(table):
        verdict, reason, py2 = table[name]
        v = "Dangerous" if verdict == "dangerous" else "Inert"
        out.append(f"    ({lit(name)}, {v}, {str(py2).lower()}, {lit(reason)}),")
    out.append("];")
    return "\n".join(out) + "\n"


def report(table, scans):
    merged = merge(scans)
    for name in sorted(table):
        verdict, reason, _ = table[name]
        print(f"{name}: {verdict.upper()}  {reason}")
        m = merged.get(name)
        if not m:
            continue
        if m["native"]:
            print("    native callables: " + " ".join(m["native"]))
        for modname, qual, kind, what in m["hits"]:
            print(f"    {kind:8} {modname}.{qual}: {what}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", action="append", default=[], help="another interpreter to scan")
    ap.add_argument("--scan", action="store_true", help="print this interpreter's scan as JSON")
    ap.add_argument("--report", action="store_true", help="print every finding instead of Rust")
    args = ap.parse_args()
    overrides = read_overrides()
    if args.scan:
        json.dump(scan_interpreter(overrides), sys.stdout)
        return
    scans = [scan_interpreter(overrides)]
    for py in args.python:
        out = subprocess.run([py, os.path.abspath(__file__), "--scan"], check=True, capture_output=True)
        scans.append(json.loads(out.stdout))
    table, problems = verdicts(scans, overrides)
    for p in problems:
        print("gen_stdlib: " + p, file=sys.stderr)
    if args.report:
        report(table, scans)
    else:
        sys.stdout.write(emit(table, scans))


if __name__ == "__main__":
    main()
