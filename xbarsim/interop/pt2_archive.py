"""Reading a ``torch.export.save`` file (``.pt2``) without running anything from it.

``torch.export.load`` unpickles: a crafted ``.pt2`` runs code through a pickled weight or constant
(``use_pickle``, ``custom_obj_*``, ``opaque_obj_*``), its sample inputs (``model.pt``), the
``guards_code`` it compiles into the module, or the ``sympify`` of a shape expression. This reader
takes only what xbarsim's importer needs, as data:

* the graph from ``models/model.json`` (plain JSON: op names, constant arguments, the module path
  of each node, the input's shape), rebuilt as a ``torch.fx`` graph whose call targets are looked
  up by name among torch's own ``aten`` operators (any other target stays an inert name that the
  importer refuses);
* each parameter, buffer and tensor constant the graph's signature names, from its raw bytes with
  the declared dtype, sizes, strides and offset checked against the bytes there are.

Sample inputs, guards, shape expressions, range constraints, extra files and anything not named
are never read. Whatever would need pickle (a pickled tensor, a custom object, the pickled format
of torch 2.7 and earlier) is refused in one line naming ``--trust-pickle``.

Bounded before anything is read or allocated: a regular file only; the zip directory's declared
entry count and size and every member name's length (:mod:`xbarsim.io.zipcheck`); every member's
declared size (the JSON's a small share of the memory budget, each tensor's values as float64
within :func:`~xbarsim.io.files.memory_budget`, all of them together too) and, for a deflated
member, what deflate can expand its compressed bytes to; a tensor's sizes, strides and offset
within the bytes its member holds.
"""

from __future__ import annotations

import json
import math
import operator
import re
import sys
import zlib

from ..errors import ConfigError
from ..io.files import memory_budget, open_regular
from ..io.zipcheck import ERRORS as ZIP_ERRORS
from ..io.zipcheck import member_size, open_zip

#: Largest JSON member: this many bytes, and at most 1/32 of the memory budget (parsed JSON takes
#: several times its text).
MAX_JSON = 256 << 20

TRUST = "only --trust-pickle reads it, and that runs code from the file: only for files you trust"

#: ``torch._export.serde.schema.ScalarType`` → torch dtype name (real types only).
DTYPES = {1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float16", 7: "float32",
          8: "float64", 12: "bool", 13: "bfloat16"}
STRIDED = 7  # schema.Layout.Strided
#: ``torch.ops.aten.NAME.OVERLOAD``: identifiers, none of them a dunder (``__class__``)
_ATEN = re.compile(r"torch\.ops\.aten\.((?!__)[A-Za-z_]\w{0,99})\.((?!__)[A-Za-z_]\w{0,99})",
                   re.ASCII)
_PATH_NAME = re.compile(r"[A-Za-z0-9_.-]{1,200}")


def _short(text, n: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 3] + "..."


class _Foreign:
    """The call target of a node whose op is not one of torch's ``aten`` operators: an inert name
    (the importer refuses it; nothing by that name is looked up or run)."""

    __module__ = __name__

    def __init__(self, name: str):
        self.__name__ = "foreign_op"
        self.__qualname__ = "foreign_op"
        self.name = name

    def __str__(self) -> str:
        return self.name

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{self.name} is not run by xbarsim")


class Pt2Program:
    """What xbarsim reads of a ``.pt2``: :meth:`module` (a ``torch.fx.GraphModule`` taking the
    image batch, parameters as attributes, as ``ExportedProgram.module()``) and ``input_dims``
    (the input's declared shape: ints, the name of a symbol for a dynamic axis; None when the
    model takes no tensor)."""

    def __init__(self, gm, input_dims):
        self._gm = gm
        self.input_dims = input_dims

    def module(self):
        return self._gm


# -- the zip archive ----------------------------------------------------------------------------
class _Archive:
    """The members of a ``.pt2`` under its root folder, each read within its declared bounds."""

    def __init__(self, path, fh, fail):
        self.path, self.fail = str(path), fail
        self.budget = memory_budget()
        self.taken = 0  # bytes read so far
        self.zip = open_zip(fh, fail, "torch.export.save file")
        infos = self.zip.infolist()
        names = [i.filename for i in infos]
        if any(n in ("version", "serialized_exported_program.json") for n in names):
            raise fail("written by torch 2.7 or earlier, whose format keeps the weights in a "
                       f"pickle: re-save it with a newer torch.export.save; {TRUST}")
        roots = {n.split("/", 1)[0] for n in names}
        if not infos or len(roots) != 1 or any("/" not in n for n in names):
            raise fail("not a torch.export.save file (its zip members are not all in one folder)")
        root = roots.pop() + "/"
        self.members = {}
        for info in infos:
            rel = info.filename[len(root):]
            if rel in self.members:
                raise fail(f"not a torch.export.save file (two zip members named "
                           f"{_short(rel)!r})")
            self.members[rel] = info

    def has(self, name: str) -> bool:
        return name in self.members

    def read(self, name: str, limit: int) -> bytes:
        """Member ``name`` (relative to the root folder), refused unread if its declared size
        passes ``limit``, the memory budget left, or what its compressed bytes can expand to."""
        info = self.members.get(name)
        if info is None:
            raise self.fail(f"not a torch.export.save file ({name} is missing)")

        def fail(message):
            return self.fail(f"{name}: {message}")

        size = member_size(info, fail)
        if size > limit:
            raise fail(f"declares {size:,} bytes, more than the {limit:,} xbarsim reads there")
        if self.taken + size > self.budget:
            raise fail(f"declares {size:,} bytes, past the {self.budget:,} bytes of memory "
                       "available for the whole file")
        try:
            data = self.zip.read(info)
        except (zlib.error, *ZIP_ERRORS) as exc:
            raise fail(f"corrupt zip member ({_short(exc, 120)})") from None
        if len(data) != size:
            raise fail(f"corrupt zip member (declares {size:,} bytes, holds {len(data):,})")
        self.taken += size
        return data

    def json(self, name: str):
        limit = min(MAX_JSON, self.budget // 32)
        data = self.read(name, limit)
        try:
            return json.loads(data.decode("utf-8"))
        except RecursionError:
            raise self.fail(f"{name}: JSON nested too deeply") from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise self.fail(f"{name}: not valid JSON ({_short(exc)})") from None

    def text(self, name: str) -> str:
        data = self.read(name, 64)
        return data.decode("utf-8", "replace").strip()


# -- tensors ------------------------------------------------------------------------------------
def _ints(values, what, fail) -> list:
    if not isinstance(values, list):
        raise fail(f"{what}: expected a list")
    out = []
    for v in values:
        n = v.get("as_int") if isinstance(v, dict) else None
        if isinstance(n, bool) or not isinstance(n, int):
            raise fail(f"{what}: expected integers (got {_short(json.dumps(values), 60)})")
        if not 0 <= n < 1 << 62:
            raise fail(f"{what}: {n} is out of range")
        out.append(n)
    return out


class _Tensors:
    """Tensors of the weights and constants configs, read on demand from their raw bytes."""

    def __init__(self, archive: _Archive, fail):
        self.a, self.fail = archive, fail
        self.configs = {}
        for kind, folder, name in (("weight", "data/weights/", "model_weights_config.json"),
                                   ("constant", "data/constants/", "model_constants_config.json")):
            cfg = archive.json(folder + name) if archive.has(folder + name) else {"config": {}}
            entries = cfg.get("config") if isinstance(cfg, dict) else None
            if not isinstance(entries, dict):
                raise fail(f"{folder}{name}: expected {{\"config\": {{...}}}}")
            self.configs[kind] = (folder, entries)
        self.storages = {}  # member name → flat tensor
        self.total = 0

    def get(self, fqn: str, kinds=("weight", "constant")):
        import torch

        for kind in kinds:
            folder, entries = self.configs[kind]
            if fqn in entries:
                break
        else:
            raise self.fail(f"not a torch.export.save file (the graph uses {_short(fqn)!r}, "
                            "which the archive does not hold)")
        what = f"{kind} {_short(fqn)!r}"
        meta = entries[fqn]
        if not isinstance(meta, dict):
            raise self.fail(f"{folder}: {what}: expected an object")
        path_name = meta.get("path_name")
        if not isinstance(path_name, str) or not _PATH_NAME.fullmatch(path_name) or \
                ".." in path_name:
            raise self.fail(f"{folder}: {what}: bad file name {_short(repr(path_name))}")
        if meta.get("use_pickle") or path_name.startswith(("custom_obj_", "opaque_obj_")):
            raise self.fail(f"{what} is stored as a pickle (a tensor subclass or a custom "
                            f"object), which xbarsim does not load; {TRUST}")
        tm = meta.get("tensor_meta")
        if not isinstance(tm, dict):
            raise self.fail(f"{folder}: {what}: no tensor_meta")
        dtype_name = DTYPES.get(tm.get("dtype"))
        if dtype_name is None:
            raise self.fail(f"{what}: dtype {_short(tm.get('dtype'))} is not supported (real "
                            "numbers only)")
        if tm.get("layout", STRIDED) != STRIDED:
            raise self.fail(f"{what}: only dense (strided) tensors are supported")
        dtype = getattr(torch, dtype_name)
        sizes = _ints(tm.get("sizes"), f"{what}: sizes", self.fail)
        strides = _ints(tm.get("strides"), f"{what}: strides", self.fail)
        offset = _ints([tm.get("storage_offset", {"as_int": 0})], f"{what}: storage_offset",
                       self.fail)[0]
        if len(strides) != len(sizes):
            raise self.fail(f"{what}: {len(sizes)} sizes but {len(strides)} strides")
        numel = math.prod(sizes)
        item = torch.empty((), dtype=dtype).element_size()
        need = numel * 8  # the importer works in float64
        budget = self.a.budget
        if need > budget or self.total + need > budget:
            raise self.fail(f"{what}: declared shape {sizes} holds {numel:,} values "
                            f"({need:,} bytes as float64), more than the {budget:,} bytes of "
                            "memory available")
        self.total += need
        member = folder + path_name
        info = self.a.members.get(member)
        if info is None:
            raise self.fail(f"not a torch.export.save file ({member} is missing)")
        if info.file_size % item:
            raise self.fail(f"{member}: {info.file_size:,} bytes is not a whole number of "
                            f"{dtype_name} values")
        have = info.file_size // item
        extent = offset + sum((s - 1) * st for s, st in zip(sizes, strides)) + 1 if numel else 0
        if have and extent > have:
            raise self.fail(f"{what}: sizes {sizes}, strides {strides} and offset {offset} reach "
                            f"value {extent:,} of the {have:,} that {member} holds")
        if not have:  # torch writes no bytes for an empty (or fake) tensor; it reads zeros
            return torch.zeros(sizes, dtype=dtype)
        flat = self.storages.get(member)
        if flat is None:
            data = self.a.read(member, budget)
            flat = torch.frombuffer(bytearray(data), dtype=dtype) if data else \
                torch.empty(0, dtype=dtype)
            self.storages[member] = flat
        return torch.as_strided(flat, sizes, strides, offset)


# -- the graph ----------------------------------------------------------------------------------
def _one(obj, what, fail):
    """The single ``{kind: value}`` of a serialized union."""
    if not isinstance(obj, dict) or len(obj) != 1:
        raise fail(f"{what}: expected one {{kind: value}} entry "
                   f"(got {_short(json.dumps(obj), 60)})")
    return next(iter(obj.items()))


def _module_stack(text):
    """``nn_module_stack`` metadata (``key,path,type;...``) as ``{key: (path, type)}``, the way
    torch's deserializer splits it; every string kept to printable characters."""
    if not isinstance(text, str) or not text:
        return None
    out = {}
    for item in text.split(";")[:256]:
        parts, start, depth = [], 0, 0
        for i, c in enumerate(item):
            if c in "[(":
                depth += 1
            elif c in ")]":
                depth -= 1
            elif c == "," and depth == 0:
                parts.append(item[start:i])
                start = i + 1
        parts.append(item[start:])
        if len(parts) != 3:
            return None
        key, path, ty = (_clean(p) for p in parts)
        out[key] = (path, ty)
    return out


def _clean(text: str) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 200 else text[:197] + "..."


class _Builder:
    def __init__(self, doc, tensors: _Tensors, fail):
        import torch

        self.torch = torch
        self.fail = fail
        self.tensors = tensors
        self.graph = torch.fx.Graph()
        self.root = torch.nn.Module()
        self.env = {}
        self.attrs = 0
        gm = doc.get("graph_module") if isinstance(doc, dict) else None
        g = gm.get("graph") if isinstance(gm, dict) else None
        sig = gm.get("signature") if isinstance(gm, dict) else None
        if not isinstance(g, dict) or not isinstance(sig, dict):
            raise fail("models/model.json: not an exported program (no graph_module.graph / "
                       "signature)")
        self.g, self.sig = g, sig

    def _name(self, text) -> str:
        return re.sub(r"[^A-Za-z0-9_]", "_", str(text))[:64] or "v"

    def _tensor_name(self, arg, what):
        if not isinstance(arg, dict):
            raise self.fail(f"models/model.json: {what}: expected a tensor")
        kind, val = _one(arg, what, self.fail) if "name" not in arg else ("as_tensor", arg)
        if kind != "as_tensor" or not isinstance(val, dict) or not isinstance(val.get("name"), str):
            raise self.fail(f"models/model.json: {what}: expected a tensor")
        return val["name"]

    def inputs(self):
        """Placeholders for the user inputs, ``get_attr`` nodes for parameters, buffers and
        constants (as ``ExportedProgram.module()`` has them); returns the first user input's
        name."""
        specs = self.sig.get("input_specs")
        if not isinstance(specs, list):
            raise self.fail("models/model.json: signature.input_specs: expected a list")
        user = []
        for i, spec in enumerate(specs):
            kind, val = _one(spec, f"signature.input_specs[{i}]", self.fail)
            if not isinstance(val, dict):
                raise self.fail(f"models/model.json: signature.input_specs[{i}]: expected an "
                                "object")
            if kind == "user_input":
                a_kind, a = _one(val.get("arg"), f"signature.input_specs[{i}].arg", self.fail)
                if a_kind != "as_tensor":
                    raise self.fail(f"models/model.json: the model takes a {a_kind[3:]} input; "
                                    "xbarsim needs exactly one input tensor (the image batch)")
                name = a.get("name") if isinstance(a, dict) else None
                self.env[name] = self.graph.placeholder(self._name(name))
                user.append(name)
                continue
            arg = val.get("arg")
            if kind in ("parameter", "buffer", "tensor_constant"):
                fqn = val.get({"parameter": "parameter_name", "buffer": "buffer_name",
                               "tensor_constant": "tensor_constant_name"}[kind])
                if not isinstance(fqn, str):
                    raise self.fail(f"models/model.json: signature.input_specs[{i}]: no name")
                kinds = ("weight", "constant") if kind != "tensor_constant" else \
                    ("constant", "weight")
                tensor = self.tensors.get(fqn, kinds)
                attr = f"_t{self.attrs}"
                self.attrs += 1
                self.root.register_buffer(attr, tensor)
                name = self._tensor_name(arg or {}, f"signature.input_specs[{i}].arg")
                self.env[name] = self.graph.get_attr(attr)
            elif kind == "custom_obj":
                raise self.fail(f"holds a custom object (a torchbind class), which only pickle "
                                f"restores; {TRUST}")
            else:
                raise self.fail(f"models/model.json: input kind {_short(kind, 40)} is not "
                                "supported (parameters, buffers, tensor constants and one image "
                                "batch)")
        if not user:
            return None
        return user[0]

    def input_dims(self, name):
        if name is None:
            return None
        values = self.g.get("tensor_values")
        meta = values.get(name) if isinstance(values, dict) else None
        sizes = meta.get("sizes") if isinstance(meta, dict) else None
        if not isinstance(sizes, list):
            raise self.fail(f"models/model.json: the input {_short(name)!r} has no declared shape")
        dims = []
        for s in sizes[:64]:
            kind, val = _one(s, "input sizes", self.fail)
            if kind == "as_int" and isinstance(val, int) and not isinstance(val, bool) and val >= 0:
                dims.append(val)
            elif kind == "as_expr" and isinstance(val, dict):
                # the expression is a sympy string: shown by its symbol's name, never parsed
                m = re.match(r"Symbol\('([A-Za-z_][A-Za-z0-9_]{0,30})'",
                             str(val.get("expr_str", "")))
                dims.append(m.group(1) if m else "dynamic")
            else:
                raise self.fail(f"models/model.json: the input's shape holds {_short(kind, 40)}")
        return dims

    def arg(self, inp, what, depth=0):
        """One serialized argument as a Python value or graph node (no pickles, no code)."""
        torch = self.torch
        if depth > 8:
            raise self.fail(f"models/model.json: {what}: arguments nested too deeply")
        kind, v = _one(inp, what, self.fail)
        if kind == "as_none":
            return None
        if kind == "as_tensor":
            return self._ref(v.get("name") if isinstance(v, dict) else None, what)
        if kind in ("as_int", "as_float", "as_bool", "as_string"):
            want = {"as_int": int, "as_float": (int, float), "as_bool": bool,
                    "as_string": str}[kind]
            if not isinstance(v, want) or (kind != "as_bool" and isinstance(v, bool)):
                raise self.fail(f"models/model.json: {what}: {kind} holds {_short(repr(v), 40)}")
            return float(v) if kind == "as_float" else v
        if kind in ("as_ints", "as_floats", "as_bools", "as_strings"):
            if not isinstance(v, list):
                raise self.fail(f"models/model.json: {what}: {kind} is not a list")
            return [self.arg({kind[:-1]: x}, what, depth + 1) for x in v]
        if kind in ("as_sym_int", "as_sym_float", "as_sym_bool"):
            k2, v2 = _one(v, what, self.fail)
            if k2 == "as_name":
                return self._ref(v2, what)
            return self.arg({k2: v2}, what, depth + 1)
        if kind in ("as_sym_ints", "as_sym_floats", "as_sym_bools"):
            if not isinstance(v, list):
                raise self.fail(f"models/model.json: {what}: {kind} is not a list")
            return [self.arg({kind[:-1]: x}, what, depth + 1) for x in v]
        if kind == "as_tensors":
            if not isinstance(v, list):
                raise self.fail(f"models/model.json: {what}: as_tensors is not a list")
            return [self._ref(x.get("name") if isinstance(x, dict) else None, what) for x in v]
        if kind == "as_optional_tensors":
            if not isinstance(v, list):
                raise self.fail(f"models/model.json: {what}: as_optional_tensors is not a list")
            return [self.arg(x, what, depth + 1) for x in v]
        if kind == "as_optional_tensor":
            return self.arg(v, what, depth + 1)
        if kind == "as_scalar_type":
            name = DTYPES.get(v) or {9: "complex32", 10: "complex64", 11: "complex128"}.get(v)
            if name is None:
                raise self.fail(f"models/model.json: {what}: dtype {_short(v)} is not supported")
            return getattr(torch, name)
        if kind == "as_memory_format":
            fmt = {1: "contiguous_format", 2: "channels_last", 3: "channels_last_3d",
                   4: "preserve_format"}.get(v)
            if fmt is None:
                raise self.fail(f"models/model.json: {what}: memory format {_short(v)}")
            return getattr(torch, fmt)
        if kind == "as_layout":
            if v != STRIDED:
                raise self.fail(f"models/model.json: {what}: only the strided layout is "
                                "supported")
            return torch.strided
        if kind == "as_device":
            dev = v.get("type") if isinstance(v, dict) else None
            if not isinstance(dev, str) or not re.fullmatch(r"[a-z_]{1,16}", dev):
                raise self.fail(f"models/model.json: {what}: bad device {_short(repr(v), 40)}")
            return "cpu"  # the importer runs on the CPU, where the tensors were read
        raise self.fail(f"models/model.json: {what}: argument kind {_short(kind, 40)} is not "
                        "supported")

    def _ref(self, name, what):
        if not isinstance(name, str) or name not in self.env:
            raise self.fail(f"models/model.json: {what}: refers to {_short(repr(name), 40)}, "
                            "which no earlier node produces")
        return self.env[name]

    def _target(self, text):
        torch = self.torch
        if not isinstance(text, str):
            raise self.fail("models/model.json: a node has no target")
        m = _ATEN.fullmatch(text)
        if m:
            try:  # torch's operator registry, by name: no module is imported, nothing is run
                op = getattr(getattr(torch.ops.aten, m.group(1)), m.group(2))
            except Exception:  # noqa: BLE001 - no such operator or overload
                op = None
            if isinstance(op, torch._ops.OpOverload):
                return op
        return _Foreign(_clean(text))

    def nodes(self):
        nodes = self.g.get("nodes")
        if not isinstance(nodes, list):
            raise self.fail("models/model.json: graph.nodes: expected a list")
        for i, node in enumerate(nodes):
            if not isinstance(node, dict):
                raise self.fail(f"models/model.json: graph.nodes[{i}]: expected an object")
            self._node(node, i)

    def _node(self, node, i):
        target = self._target(node.get("target"))
        what = f"node {_short(node.get('name', i), 40)}"
        inputs = node.get("inputs") or []
        if not isinstance(inputs, list):
            raise self.fail(f"models/model.json: {what}: inputs: expected a list")
        meta = node.get("metadata") if isinstance(node.get("metadata"), dict) else {}
        stack = _module_stack(meta.get("nn_module_stack"))
        args, kwargs = [], {}
        if isinstance(target, _Foreign):
            pass  # never run: the importer refuses it, naming the op
        else:
            given = {}
            for inp in inputs:
                if not isinstance(inp, dict) or not isinstance(inp.get("name"), str):
                    raise self.fail(f"models/model.json: {what}: malformed input")
                value = self.arg(inp.get("arg"), f"{what}: {_short(inp['name'], 40)}")
                given[inp["name"]] = (value, inp.get("kind"))
            for a in target._schema.arguments:  # as torch's deserializer: the op's own schema
                if a.name not in given:
                    if not a.has_default_value() and not a.kwarg_only:
                        raise self.fail(f"models/model.json: {what}: {target} needs argument "
                                        f"{a.name}")
                    continue
                value, kind = given.pop(a.name)
                if kind == 2 or a.kwarg_only:  # ArgumentKind.KEYWORD
                    kwargs[a.name] = value
                elif kwargs:
                    raise self.fail(f"models/model.json: {what}: positional argument {a.name} "
                                    "after a keyword one")
                else:
                    args.append(value)
            if given:
                raise self.fail(f"models/model.json: {what}: {target} has no argument "
                                f"{_short(next(iter(given)), 40)}")
        fx = self.graph.create_node("call_function", target, tuple(args), kwargs,
                                    self._name(node.get("name") or "n"))
        if stack:
            fx.meta["nn_module_stack"] = stack
        self._outputs(node.get("outputs") or [], fx, what, stack)

    def _outputs(self, outs, fx, what, stack):
        if not isinstance(outs, list):
            raise self.fail(f"models/model.json: {what}: outputs: expected a list")
        if len(outs) == 1:
            kind, v = _one(outs[0], f"{what}: output", self.fail)
            if kind in ("as_tensor", "as_sym_int", "as_sym_float", "as_sym_bool"):
                name = v.get("name") if kind == "as_tensor" else \
                    (v.get("as_name") if isinstance(v, dict) else None)
                self._bind(name, fx, what)
                return
            if kind == "as_none":
                return
            if kind == "as_tensors":
                outs = v if isinstance(v, list) else []
                outs = [{"as_tensor": o} for o in outs]
        for idx, out in enumerate(outs):
            kind, v = _one(out, f"{what}: output", self.fail)
            if kind == "as_none":
                continue
            if kind not in ("as_tensor", "as_sym_int"):
                raise self.fail(f"models/model.json: {what}: output kind {_short(kind, 40)} is "
                                "not supported")
            name = v.get("name") if kind == "as_tensor" else \
                (v.get("as_name") if isinstance(v, dict) else None)
            item = self.graph.create_node("call_function", operator.getitem, (fx, idx), {},
                                          self._name(name))
            if stack:
                item.meta["nn_module_stack"] = stack
            self._bind(name, item, what)

    def _bind(self, name, fx, what):
        if not isinstance(name, str):
            raise self.fail(f"models/model.json: {what}: an output has no name")
        self.env[name] = fx

    def output(self):
        specs = self.sig.get("output_specs")
        if not isinstance(specs, list):
            raise self.fail("models/model.json: signature.output_specs: expected a list")
        outs = []
        for i, spec in enumerate(specs):
            kind, val = _one(spec, f"signature.output_specs[{i}]", self.fail)
            if kind != "user_output":
                continue  # a buffer mutation (training-mode batch norm): not part of the result
            a_kind, a = _one((val or {}).get("arg"), f"signature.output_specs[{i}].arg",
                             self.fail)
            if a_kind != "as_tensor":
                outs.append(None)
                continue
            outs.append(self._ref(a.get("name") if isinstance(a, dict) else None,
                                  f"signature.output_specs[{i}]"))
        self.graph.output(outs[0] if len(outs) == 1 else tuple(outs))


def read_pt2(path) -> Pt2Program:
    """The graph and tensors of a ``torch.export.save`` file, read as data (module docstring);
    every problem is one :class:`~xbarsim.errors.ConfigError` naming the file."""
    def fail(message):
        return ConfigError(str(path), None, None, message)

    try:
        import torch
        import torch.fx  # noqa: F401
    except ImportError:
        raise ConfigError(str(path), None, None, "importing .pt2 needs the train extra (torch): "
                          "pip install 'xbarsim[train]'") from None
    with open_regular(path, fail) as fh:
        archive = _Archive(path, fh, fail)
        if not archive.has("archive_format") or archive.text("archive_format") != "pt2":
            raise fail("not a torch.export.save file (no archive_format: pt2 inside)")
        if archive.has("archive_version") and archive.text("archive_version") != "0":
            raise fail(f"archive version {_short(archive.text('archive_version'), 20)} is not "
                       "one xbarsim reads (0)")
        if archive.has("byteorder") and archive.text("byteorder") != sys.byteorder:
            raise fail(f"written on a {_short(archive.text('byteorder'), 20)}-endian machine; "
                       f"this one is {sys.byteorder}-endian")
        if not archive.has("models/model.json"):
            raise fail("not a torch.export.save file (models/model.json is missing)")
        doc = archive.json("models/model.json")
        b = _Builder(doc, _Tensors(archive, fail), fail)
        try:
            first = b.inputs()
            dims = b.input_dims(first)
            b.nodes()
            b.output()
        except RecursionError:  # a graph nested past the interpreter's stack: still one line
            raise fail("models/model.json: nested too deeply") from None
    try:
        b.graph.lint()
        gm = torch.fx.GraphModule(b.root, b.graph, class_name="Pt2Module")
    except Exception as exc:  # noqa: BLE001 - a malformed graph, whatever torch.fx says
        raise fail(f"models/model.json: not a well-formed graph ({_short(exc, 120)})") from None
    return Pt2Program(gm, dims)


__all__ = ["Pt2Program", "read_pt2"]
