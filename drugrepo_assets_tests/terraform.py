"""A Terraform evaluator for the tests: a module's .tf files parsed by python-hcl2 and evaluated the way
`terraform plan` would for the values known before apply.

No provider can be downloaded here, so Terraform itself never plans infra/'s roots in the tests.
`Instance` is a module called with evaluated inputs: its variables (given or defaulted), locals,
nested modules, outputs, and its resources and data sources under ``count``/``for_each``, their
configured arguments evaluated with the functions of `FUNCTIONS`. A computed attribute (an ARN, an
endpoint) or a data source's result evaluates to `UNKNOWN`, as in a plan. An expression it cannot
evaluate fails an assertion that names it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import hcl2

__all__ = [
    "BINARY",
    "FUNCTIONS",
    "UNKNOWN",
    "Block",
    "Instance",
    "Namespace",
    "ResourceValue",
    "Unknown",
    "has_unknown",
    "module_blocks",
    "parse",
]


class Unknown:
    """A value Terraform knows only after apply: a computed attribute or a data source's result."""

    def __repr__(self) -> str:
        return "(known after apply)"


UNKNOWN = Unknown()


@dataclass
class Block:
    """One HCL block: its type, labels, attributes (unevaluated expressions) and nested blocks."""

    type: str
    labels: tuple[str, ...]
    attrs: dict[str, Tree] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)

    def nested(self, type_: str) -> list[Block]:
        return [b for b in self.blocks if b.type == type_]


# python-hcl2's parse trees are lark trees: a node has `data` (its rule) and `children`, a token is a str.
Tree = Any


def _is_node(child: Any) -> bool:
    return hasattr(child, "data")


def _trees(node: Tree) -> list[Tree]:
    """Children of a parse tree node that carry meaning (no tokens, no newlines or comments)."""
    return [c for c in node.children if _is_node(c) and c.data != "new_line_or_comment"]


def _name(node: Tree) -> str:
    """The text of an identifier (or a keyword such as for_each), or of a plain string label."""
    if node.data in ("identifier", "keyword"):
        return str(node.children[0])
    parts = [c for c in node.children if _is_node(c) and c.data == "string_part"]
    return "".join(str(p.children[0]) for p in parts)


def _block(node: Tree) -> Block:
    head = _trees(node)
    block = Block(_name(head[0]), tuple(_name(label) for label in head[1:-1]))
    for item in _trees(head[-1]):
        if item.data == "attribute":
            key, value = _trees(item)
            block.attrs[_name(key)] = value
        else:
            block.blocks.append(_block(item))
    return block


@cache
def parse(path: Path) -> list[Block]:
    """The top-level blocks of one .tf file, parsed by python-hcl2."""
    body = _trees(hcl2.parses_to_tree(path.read_text()))[0]
    return [_block(node) for node in _trees(body)]


@cache
def module_blocks(directory: Path) -> list[Block]:
    """Every top-level block of a module (all .tf files of one directory)."""
    files = sorted(directory.glob("*.tf"))
    assert files, f"no .tf files in {directory}"
    return [block for path in files for block in parse(path)]


class ResourceValue:
    """One instance of a resource or data source: configured arguments evaluate, computed ones are UNKNOWN."""

    def __init__(self, instance: Instance, block: Block, scope: dict[str, Any]) -> None:
        self.instance, self.block, self.scope = instance, block, scope

    @property
    def type(self) -> str:
        return self.block.labels[0]

    def get(self, name: str) -> Any:
        """An argument's value; a computed attribute (or a nested block's, in a reference) is UNKNOWN."""
        if name in self.block.attrs:
            return self.instance.eval(self.block.attrs[name], self.scope)
        return UNKNOWN

    def nested(self, name: str) -> list[ResourceValue]:
        """The nested blocks of one type, each evaluated like the resource."""
        return [ResourceValue(self.instance, b, self.scope) for b in self.block.nested(name)]

    def has(self, name: str) -> bool:
        return name in self.block.attrs or bool(self.block.nested(name))


@dataclass
class Namespace:
    """A root of a reference: var, local, module, data, count, each, path, or a resource type."""

    kind: str
    label: str = ""


class Instance:
    """A module called with evaluated inputs: the root of an environment or one of its nested modules."""

    META = ("source", "version", "providers", "depends_on", "count", "for_each")

    def __init__(self, directory: Path, inputs: dict[str, Any], address: str = "") -> None:
        self.directory, self.inputs, self.address = directory.resolve(), inputs, address
        self.blocks = module_blocks(self.directory)
        self._locals: dict[str, Any] = {}
        self._children: dict[str, Instance] = {}

    def of(self, type_: str, *labels: str) -> list[Block]:
        return [b for b in self.blocks if b.type == type_ and b.labels[: len(labels)] == labels]

    def one(self, type_: str, *labels: str) -> Block:
        found = self.of(type_, *labels)
        assert len(found) == 1, f"{self.address or self.directory}: {len(found)} {type_} {labels}"
        return found[0]

    def variable(self, name: str) -> Any:
        if name in self.inputs:
            return self.inputs[name]
        block = self.one("variable", name)
        assert "default" in block.attrs, f"{self.address}: required variable {name} not given"
        return self.eval(block.attrs["default"])

    def local(self, name: str) -> Any:
        if name not in self._locals:
            (block,) = [b for b in self.of("locals") if name in b.attrs]
            self._locals[name] = self.eval(block.attrs[name])
        return self._locals[name]

    def child(self, name: str) -> Instance:
        if name not in self._children:
            block = self.one("module", name)
            source = self.eval(block.attrs["source"])
            inputs = {key: self.eval(value) for key, value in block.attrs.items() if key not in self.META}
            self._children[name] = Instance(self.directory / source, inputs, f"{self.address}module.{name}.")
        return self._children[name]

    def output(self, name: str) -> Any:
        return self.eval(self.one("output", name).attrs["value"])

    def resource(self, kind: str, type_: str, name: str) -> Any:
        """A resource's (or data source's) value: one instance, a list under count, a dict under for_each."""
        block = self.one(kind, type_, name)
        if "count" in block.attrs:
            count = self.eval(block.attrs["count"])
            assert isinstance(count, int), f"{self.address}{type_}.{name}: count {count!r} not known before apply"
            return [ResourceValue(self, block, {"count.index": i}) for i in range(count)]
        if "for_each" in block.attrs:
            keys = self.eval(block.attrs["for_each"])
            assert not isinstance(keys, Unknown), f"{self.address}{type_}.{name}: for_each not known before apply"
            items = keys.items() if isinstance(keys, dict) else ((k, k) for k in keys)
            return {k: ResourceValue(self, block, {"each.key": k, "each.value": v}) for k, v in items}
        return ResourceValue(self, block, {})

    def resources(self, type_: str | None = None) -> Iterator[tuple[str, ResourceValue]]:
        """Every managed resource instance here and in nested modules, with its address."""
        for block in self.of("resource"):
            if type_ is not None and block.labels[0] != type_:
                continue
            value = self.resource("resource", *block.labels)
            base = f"{self.address}{block.labels[0]}.{block.labels[1]}"
            if isinstance(value, list):
                yield from ((f"{base}[{i}]", v) for i, v in enumerate(value))
            elif isinstance(value, dict):
                yield from ((f'{base}["{k}"]', v) for k, v in value.items())
            else:
                yield base, value
        for block in self.of("module"):
            yield from self.child(block.labels[0]).resources(type_)

    def eval(self, node: Tree, scope: dict[str, Any] | None = None) -> Any:
        return _Evaluator(self, scope or {}).value(node)


def _cidrsubnet(prefix: str, newbits: int, netnum: int) -> str:
    network = ipaddress.ip_network(prefix)
    return str(list(network.subnets(prefixlen_diff=newbits))[netnum])


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "length": len,
    "min": min,
    "max": max,
    "tostring": str,
    "toset": lambda items: sorted(set(items)),
    "concat": lambda *lists: [item for items in lists for item in items],
    "merge": lambda *maps: {k: v for m in maps for k, v in m.items()},
    "replace": lambda text, old, new: text.replace(old, new),
    "cidrsubnet": _cidrsubnet,
}


def has_unknown(value: Any) -> bool:
    """True when ``value`` is `UNKNOWN` or holds it (in a list or a map, at any depth)."""
    if isinstance(value, Unknown):
        return True
    if isinstance(value, dict):
        return any(has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(has_unknown(v) for v in value)
    return False


BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "&&": lambda a, b: a and b,
    "||": lambda a, b: a or b,
}


class _Evaluator:
    """Evaluates one HCL expression tree in the scope of a module instance (plus count/each/for variables)."""

    def __init__(self, instance: Instance, scope: dict[str, Any]) -> None:
        self.instance, self.scope = instance, scope

    def value(self, node: Tree) -> Any:
        handler = getattr(self, f"_{node.data}", None)
        assert handler is not None, f"{self.instance.address}: cannot evaluate {node.data}"
        return handler(node)

    def _expr_term(self, node: Tree) -> Any:
        (inner,) = _trees(node)
        return self.value(inner)

    def _literal_value(self, node: Tree) -> Any:
        return {"true": True, "false": False, "null": None}[str(node.children[0])]

    def _int_lit(self, node: Tree) -> Any:
        return int(str(node.children[0]))

    def _float_lit(self, node: Tree) -> Any:
        return float(str(node.children[0]))

    def _string(self, node: Tree) -> Any:
        parts: list[Any] = []
        for part in _trees(node):
            (piece,) = part.children
            parts.append(self.value(_trees(piece)[0]) if _is_node(piece) else str(piece).replace('\\"', '"'))
        return UNKNOWN if any(isinstance(p, Unknown) for p in parts) else "".join(str(p) for p in parts)

    def _tuple(self, node: Tree) -> Any:
        return [self.value(item) for item in _trees(node)]

    def _object(self, node: Tree) -> Any:
        result = {}
        for element in _trees(node):
            key_node, value_node = _trees(element)
            (key_expr,) = _trees(key_node)
            (key_term,) = _trees(key_expr)
            key = _name(key_term) if key_term.data == "identifier" else self.value(key_term)
            result[key] = self.value(value_node)
        return result

    def _identifier(self, node: Tree) -> Any:
        name = _name(node)
        if name in self.scope:
            return self.scope[name]
        if name in ("var", "local", "module", "data", "count", "each", "path"):
            return Namespace(name)
        return Namespace("resource", name)

    def _get_attr_expr_term(self, node: Tree) -> Any:
        base_node, attr = _trees(node)
        return self.attr(self.value(base_node), _name(_trees(attr)[0]))

    def attr(self, base: Any, name: str) -> Any:
        if isinstance(base, Unknown):
            return UNKNOWN
        if isinstance(base, ResourceValue):
            return base.get(name)
        if isinstance(base, dict):
            assert name in base, f"{self.instance.address}: no attribute {name} in {sorted(base)}"
            return base[name]
        assert isinstance(base, Namespace), f"{self.instance.address}: .{name} of {base!r}"
        if base.kind == "var":
            return self.instance.variable(name)
        if base.kind == "local":
            return self.instance.local(name)
        if base.kind in ("count", "each"):
            return self.scope.get(f"{base.kind}.{name}", UNKNOWN)
        if base.kind == "path":
            return UNKNOWN
        if base.kind == "module":
            return Namespace("module_output", name)
        if base.kind == "module_output":
            return self.instance.child(base.label).output(name)
        if base.kind == "data":
            return Namespace("data_type", name)
        if base.kind == "data_type":
            return self.instance.resource("data", base.label, name)
        return self.instance.resource("resource", base.label, name)

    def _index_expr_term(self, node: Tree) -> Any:
        base_node, index_node = _trees(node)
        base, index = self.value(base_node), self.value(_trees(index_node)[0])
        return UNKNOWN if isinstance(base, Unknown) or isinstance(index, Unknown) else base[index]

    def _full_splat_expr_term(self, node: Tree) -> Any:
        base_node, splat = _trees(node)
        base = self.value(base_node)
        if isinstance(base, Unknown):
            return UNKNOWN
        items = base if isinstance(base, list) else [base]
        results = []
        for item in items:
            for attr in _trees(splat):
                item = self.attr(item, _name(_trees(attr)[0]))
            results.append(item)
        return results

    def _function_call(self, node: Tree) -> Any:
        name_node, *rest = _trees(node)
        name = _name(name_node)
        assert name in FUNCTIONS, f"{self.instance.address}: function {name} is not evaluated here"
        args = [self.value(a) for a in _trees(rest[0])] if rest else []
        return UNKNOWN if any(has_unknown(a) for a in args) else FUNCTIONS[name](*args)

    def _conditional(self, node: Tree) -> Any:
        condition, when_true, when_false = _trees(node)
        chosen = self.value(condition)
        if isinstance(chosen, Unknown):
            return UNKNOWN
        return self.value(when_true if chosen else when_false)

    def _binary_op(self, node: Tree) -> Any:
        left_node, term = _trees(node)
        operator_node, right_node = _trees(term)
        left, right = self.value(left_node), self.value(right_node)
        if isinstance(left, Unknown) or isinstance(right, Unknown):
            return UNKNOWN
        return BINARY[str(operator_node.children[0])](left, right)

    def _unary_op(self, node: Tree) -> Any:
        operator = next(str(c) for c in node.children if not _is_node(c))
        operand = self.value(_trees(node)[0])
        if isinstance(operand, Unknown):
            return UNKNOWN
        return not operand if operator == "!" else -operand

    def _for_intro(self, node: Tree) -> tuple[list[str], Any]:
        *names, collection = _trees(node)
        return [_name(n) for n in names], self.value(collection)

    def _iterate(self, node: Tree) -> Iterator[tuple[_Evaluator, list[Tree]]]:
        intro, *body = _trees(node)
        names, collection = self._for_intro(intro)
        assert not isinstance(collection, Unknown), f"{self.instance.address}: for over an unknown collection"
        pairs = collection.items() if isinstance(collection, dict) else enumerate(collection)
        condition = [b for b in body if b.data == "for_cond"]
        body = [b for b in body if b.data != "for_cond"]
        for key, item in pairs:
            bound = dict(zip(names, [key, item] if len(names) == 2 else [item], strict=True))
            inner = _Evaluator(self.instance, self.scope | bound)
            if not condition or inner.value(_trees(condition[0])[0]):
                yield inner, body

    def _for_tuple_expr(self, node: Tree) -> Any:
        return [inner.value(body[0]) for inner, body in self._iterate(node)]

    def _for_object_expr(self, node: Tree) -> Any:
        return {inner.value(body[0]): inner.value(body[1]) for inner, body in self._iterate(node)}
