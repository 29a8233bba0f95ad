"""Executing a parsed template: Go's text/template/exec.go, step for step.

The evaluator walks the tree with Go's rules — pipelines pass their value as the last
argument of the next command, ``if``/``with``/``range`` use Go's truth, ``range`` visits
map keys in sorted order, variables are scoped to the enclosing control structure,
``missingkey=zero`` makes a missing map key the element type's zero value — and reports
errors with Go's ``template: NAME:LINE:COL: executing "NAME" at <NODE>: …`` wording.
"""

from __future__ import annotations

from typing import Any

from ollamapy.golang import quote as go_quote
from ollamapy.golang import valid_utf8

from .funcs import (
    BUILTINS,
    FuncError,
    GoFunc,
    indirect,
    indirect_interface,
    is_true,
    method_func,
    printable_value,
    truth,
)
from .gofmt import elements, map_items, sprint, sprintf
from .gotypes import (
    ANY,
    INVALID,
    REFLECT_VALUE,
    GoType,
    Iface,
    Kind,
    Ptr,
    as_value,
    find_method,
    kind_of,
    struct_fields,
    type_of,
    zero_of,
)
from .parse import (
    ActionNode,
    BoolNode,
    BranchNode,
    BreakNode,
    ChainNode,
    CommandNode,
    ContinueNode,
    DotNode,
    FieldNode,
    IdentifierNode,
    IfNode,
    ListNode,
    NilNode,
    Node,
    NumberNode,
    PipeNode,
    RangeNode,
    StringNode,
    TemplateNode,
    TextNode,
    Tree,
    VariableNode,
    WithNode,
    location,
)

__all__ = ["MAX_EXEC_DEPTH", "ExecError", "execute"]

MAX_EXEC_DEPTH = 100000  # Go's limit on nested {{template}} calls


class ExecError(Exception):
    """A template that failed while executing: Go's message and the line it names."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _Missing:
    """Go's ``missingVal``: no value was piped into this command."""


MISSING = _Missing()


class _Break(Exception):
    """``{{break}}``: unwinds to the enclosing range."""


class _Continue(Exception):
    """``{{continue}}``: unwinds to the enclosing range's next iteration."""


class _State:
    """One execution: output, the current node (for errors) and the variable stack."""

    def __init__(self, trees: dict[str, Tree], tree: Tree, funcs: dict[str, GoFunc], out: list[str]) -> None:
        self.trees = trees
        self.tree = tree
        self.funcs = funcs
        self.out = out
        self.node: Node | None = None
        self.vars: list[list[Any]] = []
        self.depth = 0

    # --- variables -----------------------------------------------------------------

    def push(self, name: str, value: Any) -> None:
        self.vars.append([name, value])

    def mark(self) -> int:
        return len(self.vars)

    def pop(self, mark: int) -> None:
        del self.vars[mark:]

    def set_var(self, name: str, value: Any) -> None:
        for v in reversed(self.vars):
            if v[0] == name:
                v[1] = value
                return
        self.errorf(f"undefined variable: {name}")

    def set_top_var(self, n: int, value: Any) -> None:
        self.vars[len(self.vars) - n][1] = value

    def var_value(self, name: str) -> Any:
        for v in reversed(self.vars):
            if v[0] == name:
                return v[1]
        self.errorf(f"undefined variable: {name}")

    # --- errors --------------------------------------------------------------------

    def at(self, node: Node) -> None:
        self.node = node

    def errorf(self, message: str) -> None:
        name = self.tree.name
        if self.node is None:
            raise ExecError(f"template: {name}: {message}", None)
        loc = location(self.tree.text, self.tree.parse_name, self.node.pos)
        line = 1 + self.tree.text.count("\n", 0, self.node.pos)
        raise ExecError(f"template: {loc}: executing {go_quote(name)} at <{self.node}>: {message}", line)

    # --- walking -------------------------------------------------------------------

    def walk(self, dot: Any, node: Node) -> None:
        self.at(node)
        if isinstance(node, ActionNode):
            val = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.print_value(node, val)
        elif isinstance(node, TextNode):
            self.out.append(node.text)
        elif isinstance(node, ListNode):
            for n in node.nodes:
                self.walk(dot, n)
        elif isinstance(node, (IfNode, WithNode)):
            self.walk_if_or_with(isinstance(node, WithNode), dot, node)
        elif isinstance(node, RangeNode):
            self.walk_range(dot, node)
        elif isinstance(node, TemplateNode):
            self.walk_template(dot, node)
        elif isinstance(node, BreakNode):
            raise _Break
        elif isinstance(node, ContinueNode):
            raise _Continue
        else:
            self.errorf(f"unknown node: {node}")

    def walk_if_or_with(self, is_with: bool, dot: Any, node: BranchNode) -> None:
        mark = self.mark()
        try:
            val = self.eval_pipeline(dot, node.pipe)
            result, ok = is_true(indirect_interface(val))
            if not ok:
                self.errorf(f"if/with can't use {sprintf('%v', [val])}")
            if result:
                self.walk(val if is_with else dot, node.list)
            elif node.else_list is not None:
                self.walk(dot, node.else_list)
        finally:
            self.pop(mark)

    def walk_range(self, dot: Any, r: RangeNode) -> None:
        self.at(r)
        outer = self.mark()
        try:
            val, _ = indirect(self.eval_pipeline(dot, r.pipe))
            mark = self.mark()
            decl = r.pipe.decl

            def one_iteration(index: Any, elem: Any) -> None:
                if decl:
                    if r.pipe.is_assign:
                        self.set_var(decl[0].ident[0], index if len(decl) > 1 else elem)
                    else:
                        self.set_top_var(1, elem)
                if len(decl) > 1:
                    if r.pipe.is_assign:
                        self.set_var(decl[1].ident[0], elem)
                    else:
                        self.set_top_var(2, index)
                try:
                    self.walk(elem, r.list)
                except _Continue:
                    pass
                finally:
                    self.pop(mark)

            k = kind_of(val)
            ran = False
            if k in (Kind.INT, Kind.UINT):
                if len(decl) > 1:
                    self.errorf(f"can't use {sprintf('%v', [val])} to iterate over more than one variable")
                for i in range(int(val)):
                    ran = True
                    one_iteration(INVALID, type(val)(i))
            elif k == Kind.SLICE:
                for i, item in enumerate(elements(val)):
                    ran = True
                    one_iteration(i, item)
            elif k == Kind.MAP:
                for key, value in map_items(val):
                    ran = True
                    one_iteration(key, value)
            elif k != Kind.INVALID:
                self.errorf(f"range can't iterate over {sprintf('%v', [val])}")
            if not ran and r.else_list is not None:
                self.walk(dot, r.else_list)
        except _Break:
            pass
        finally:
            self.pop(outer)

    def walk_template(self, dot: Any, t: TemplateNode) -> None:
        self.at(t)
        tree = self.trees.get(t.name)
        if tree is None:
            self.errorf(f"template {go_quote(t.name)} not defined")
        if self.depth == MAX_EXEC_DEPTH:
            self.errorf(f"exceeded maximum template depth ({MAX_EXEC_DEPTH})")
        dot = self.eval_pipeline(dot, t.pipe)
        assert tree is not None
        new = _State(self.trees, tree, self.funcs, self.out)
        new.depth = self.depth + 1
        new.vars = [["$", dot]]
        try:
            new.walk(dot, tree.root)
        except RecursionError:
            # Python's stack ends long before Go's limit; report the runaway recursion
            # as Go does when it reaches it, at this (innermost catching) call.
            self.at(t)
            self.errorf(f"exceeded maximum template depth ({MAX_EXEC_DEPTH})")

    # --- evaluation ----------------------------------------------------------------

    def eval_pipeline(self, dot: Any, pipe: PipeNode | None) -> Any:
        if pipe is None:
            return INVALID
        self.at(pipe)
        value: Any = MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
            if isinstance(value, Iface):
                value = INVALID if value.value is None else value.value
        for variable in pipe.decl:
            if pipe.is_assign:
                self.set_var(variable.ident[0], value)
            else:
                self.push(variable.ident[0], value)
        return value

    def not_a_function(self, args: list[Node], final: Any) -> None:
        if len(args) > 1 or final is not MISSING:
            self.errorf(f"can't give argument to non-function {args[0]}")

    def eval_command(self, dot: Any, cmd: CommandNode, final: Any) -> Any:
        first = cmd.args[0]
        if isinstance(first, FieldNode):
            return self.eval_field_node(dot, first, cmd.args, final)
        if isinstance(first, ChainNode):
            return self.eval_chain_node(dot, first, cmd.args, final)
        if isinstance(first, IdentifierNode):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, PipeNode):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, VariableNode):
            return self.eval_variable_node(dot, first, cmd.args, final)
        self.at(first)
        self.not_a_function(cmd.args, final)
        if isinstance(first, BoolNode):
            return first.true
        if isinstance(first, DotNode):
            return dot
        if isinstance(first, NilNode):
            self.errorf("nil is not a command")
        if isinstance(first, NumberNode):
            return self.ideal_constant(first)
        if isinstance(first, StringNode):
            return first.text
        self.errorf(f"can't evaluate command {go_quote(str(first))}")

    def ideal_constant(self, constant: NumberNode) -> Any:
        self.at(constant)
        text = constant.text
        if constant.is_complex:
            return constant.complex128
        is_hex_int = len(text) > 2 and text[0] == "0" and text[1] in "xX" and not any(c in text for c in "pP")
        if constant.is_float and not is_hex_int and not text.startswith("'") and any(c in text for c in ".eEpP"):
            return constant.float64
        if constant.is_int:
            return constant.int64
        if constant.is_uint:
            self.errorf(f"{text} overflows int")
        return INVALID

    def eval_field_node(self, dot: Any, field: FieldNode, args: list[Node] | None, final: Any) -> Any:
        self.at(field)
        return self.eval_field_chain(dot, dot, field, field.ident, args, final)

    def eval_chain_node(self, dot: Any, chain: ChainNode, args: list[Node] | None, final: Any) -> Any:
        self.at(chain)
        if not chain.field:
            self.errorf("internal error: no fields in evalChainNode")
        if isinstance(chain.node, NilNode):
            self.errorf(f"indirection through explicit nil in {chain}")
        pipe = self.eval_arg(dot, None, chain.node)
        return self.eval_field_chain(dot, pipe, chain, chain.field, args, final)

    def eval_variable_node(self, dot: Any, variable: VariableNode, args: list[Node] | None, final: Any) -> Any:
        self.at(variable)
        value = self.var_value(variable.ident[0])
        if len(variable.ident) == 1:
            self.not_a_function(args or [variable], final)
            return value
        return self.eval_field_chain(dot, value, variable, variable.ident[1:], args, final)

    def eval_field_chain(
        self, dot: Any, receiver: Any, node: Node, ident: list[str], args: list[Node] | None, final: Any
    ) -> Any:
        for name in ident[:-1]:
            receiver = self.eval_field(dot, name, node, None, MISSING, receiver)
        return self.eval_field(dot, ident[-1], node, args, final, receiver)

    def eval_function(self, dot: Any, node: IdentifierNode, cmd: Node, args: list[Node] | None, final: Any) -> Any:
        self.at(node)
        name = node.ident
        fn = self.funcs.get(name)
        is_builtin = False
        if fn is None:
            fn = BUILTINS.get(name)
            is_builtin = fn is not None
        if fn is None:
            self.errorf(f"{go_quote(name)} is not a defined function")
        assert fn is not None
        return self.eval_call(dot, fn, is_builtin, cmd, name, args, final)

    def eval_field(
        self, dot: Any, field_name: str, node: Node, args: list[Node] | None, final: Any, receiver: Any
    ) -> Any:
        if receiver is INVALID:
            return INVALID
        typ = type_of(receiver)
        receiver, is_nil = indirect(receiver)
        if isinstance(receiver, Iface) and is_nil:
            self.errorf(f"nil pointer evaluating {typ}.{field_name}")
        method = find_method(receiver, field_name)
        if method is not None:
            return self.eval_call(dot, method_func(field_name, method), False, node, field_name, args, final)
        has_args = (args is not None and len(args) > 1) or final is not MISSING
        k = kind_of(receiver)
        if k == Kind.STRUCT:
            fields = dict(struct_fields(receiver))
            if field_name in fields:
                if has_args:
                    self.errorf(f"{field_name} has arguments but cannot be invoked as function")
                return as_value(getattr(receiver, field_name), fields[field_name])
        elif k == Kind.MAP:
            t = type_of(receiver)
            assert t.key is not None and t.elem is not None
            if t.key.kind in (Kind.STRING, Kind.INTERFACE):
                if has_args:
                    self.errorf(f"{field_name} is not a method but has arguments")
                if field_name in receiver:
                    return as_value(receiver[field_name], t.elem)
                return zero_of(t.elem)
        elif k == Kind.PTR:
            elem = type_of(receiver).elem
            assert elem is not None
            names = {f.name for f in getattr(elem.struct, "GO_FIELDS", ())}
            if (elem.kind != Kind.STRUCT or field_name in names) and is_nil:
                self.errorf(f"nil pointer evaluating {typ}.{field_name}")
        self.errorf(f"can't evaluate field {field_name} in type {typ}")

    def eval_call(
        self, dot: Any, fn: GoFunc, is_builtin: bool, node: Node, name: str, args: list[Node] | None, final: Any
    ) -> Any:
        call_args = args[1:] if args is not None else []
        num_in = len(call_args) + (0 if final is MISSING else 1)
        num_fixed = len(call_args)
        if fn.variadic:
            num_fixed = fn.num_in - 1
            if num_in < num_fixed:
                self.errorf(f"wrong number of args for {name}: want at least {fn.num_in - 1} got {len(call_args)}")
        elif num_in != fn.num_in:
            self.errorf(f"wrong number of args for {name}: want {fn.num_in} got {num_in}")

        if is_builtin and name in ("and", "or"):
            v: Any = INVALID
            for arg in call_args:
                v = self.eval_arg(dot, REFLECT_VALUE, arg)
                if truth(v) == (name == "or"):
                    return v
            if final is not MISSING:
                v = self.validate_type(final, REFLECT_VALUE)
            return v

        argv: list[Any] = []
        i = 0
        while i < num_fixed and i < len(call_args):
            argv.append(self.eval_arg(dot, fn.params[i], call_args[i]))
            i += 1
        if fn.variadic:
            while i < len(call_args):
                argv.append(self.eval_arg(dot, fn.params[-1], call_args[i]))
                i += 1
        if final is not MISSING:
            t = fn.params[-1]
            if fn.variadic and num_in - 1 < num_fixed:
                t = fn.params[num_in - 1]
            argv.append(self.validate_type(final, t))

        if is_builtin and name == "call":
            if call_args:
                callee = str(call_args[0])
            else:  # reflect.Value.String(): the string itself, else "<T Value>"
                callee = final if isinstance(final, str) else f"<{type_of(final)} Value>"
            fn_value = indirect_interface(argv[0])
            if kind_of(fn_value) == Kind.FUNC:
                return fn_value(*(_to_param(a, ANY) for a in argv[1:]))
            self.at(node)
            self.errorf(f"error calling call: {_call_error(callee, fn_value)}")

        params = [fn.param(j) for j in range(len(argv))]
        argv = [_to_param(a, t) for a, t in zip(argv, params)]
        try:
            result = fn.impl(*argv)
        except FuncError as err:
            self.at(node)
            self.errorf(f"error calling {name}: {err}")
        return Iface(None) if result is None else result

    def validate_type(self, value: Any, typ: GoType | None) -> Any:
        if value is INVALID:
            if typ is None:
                return INVALID
            if _can_be_nil(typ):
                return INVALID if typ == REFLECT_VALUE else zero_of(typ)
            self.errorf(f"invalid value; expected {typ}")
        if typ is None or typ == REFLECT_VALUE:
            return value
        vt = type_of(value)
        if not _assignable(vt, typ):
            if isinstance(value, Iface) and value.value is not None:
                value = value.value
                if _assignable(type_of(value), typ):
                    return value
            if isinstance(value, Ptr) and value.go_type.elem is not None and _assignable(value.go_type.elem, typ):
                if value.target is None:
                    self.errorf(f"dereference of nil pointer of type {typ}")
                return value.target
            self.errorf(f"wrong type for value; expected {typ}; got {type_of(value)}")
        return value

    def eval_arg(self, dot: Any, typ: GoType | None, n: Node) -> Any:
        self.at(n)
        if isinstance(n, DotNode):
            return self.validate_type(dot, typ)
        if isinstance(n, NilNode):
            if typ is not None and _can_be_nil(typ):
                return INVALID if typ == REFLECT_VALUE else zero_of(typ)
            self.errorf(f"cannot assign nil to {typ}")
        if isinstance(n, FieldNode):
            return self.validate_type(self.eval_field_node(dot, n, [n], MISSING), typ)
        if isinstance(n, VariableNode):
            return self.validate_type(self.eval_variable_node(dot, n, None, MISSING), typ)
        if isinstance(n, PipeNode):
            return self.validate_type(self.eval_pipeline(dot, n), typ)
        if isinstance(n, IdentifierNode):
            return self.validate_type(self.eval_function(dot, n, n, None, MISSING), typ)
        if isinstance(n, ChainNode):
            return self.validate_type(self.eval_chain_node(dot, n, None, MISSING), typ)
        assert typ is not None
        k = typ.kind
        if k == Kind.BOOL:
            if isinstance(n, BoolNode):
                return n.true
            self.errorf(f"expected bool; found {n}")
        if k == Kind.STRING:
            if isinstance(n, StringNode):
                return n.text
            self.errorf(f"expected string; found {n}")
        if k == Kind.INT:
            if isinstance(n, NumberNode) and n.is_int:
                return n.int64
            self.errorf(f"expected integer; found {n}")
        if k == Kind.FLOAT:
            if isinstance(n, NumberNode) and n.is_float:
                return n.float64
            self.errorf(f"expected float; found {n}")
        if k == Kind.INTERFACE or typ == REFLECT_VALUE:
            return self.eval_empty_interface(dot, n)
        self.errorf(f"can't handle {n} for arg of type {typ}")

    def eval_empty_interface(self, dot: Any, n: Node) -> Any:
        self.at(n)
        if isinstance(n, BoolNode):
            return n.true
        if isinstance(n, DotNode):
            return dot
        if isinstance(n, FieldNode):
            return self.eval_field_node(dot, n, None, MISSING)
        if isinstance(n, IdentifierNode):
            return self.eval_function(dot, n, n, None, MISSING)
        if isinstance(n, NumberNode):
            return self.ideal_constant(n)
        if isinstance(n, StringNode):
            return n.text
        if isinstance(n, VariableNode):
            return self.eval_variable_node(dot, n, None, MISSING)
        if isinstance(n, PipeNode):
            return self.eval_pipeline(dot, n)
        self.errorf(f"can't handle assignment of {n} to empty interface argument")

    def print_value(self, node: Node, v: Any) -> None:
        self.at(node)
        printable, ok = printable_value(v)
        if not ok:
            self.errorf(f"can't print {node} of type {type_of(v)}")
        self.out.append(sprint([printable]))


def _can_be_nil(typ: GoType) -> bool:
    if typ.kind in (Kind.FUNC, Kind.INTERFACE, Kind.MAP, Kind.PTR, Kind.SLICE):
        return True
    return typ == REFLECT_VALUE


def _assignable(vt: GoType, typ: GoType) -> bool:
    return vt == typ or typ.kind == Kind.INTERFACE


def _to_param(value: Any, typ: GoType) -> Any:
    """What a Go function receives: ``any`` parameters see the concrete value (or nil)."""
    if typ == REFLECT_VALUE:
        return value
    if isinstance(value, Iface):
        return value.value
    if value is INVALID:
        return None
    return value


def _call_error(callee: str, fn: Any) -> str:
    if fn is INVALID:
        return "call of nil"
    return f"non-function {callee} of type {type_of(fn)}"


def execute(trees: dict[str, Tree], name: str, data: Any, funcs: dict[str, GoFunc]) -> str:
    """Run template ``name`` of ``trees`` on ``data``; raises ExecError as Go would fail."""
    out: list[str] = []
    tree = trees[name]
    state = _State(trees, tree, funcs, out)
    value = INVALID if data is None else data
    state.vars = [["$", value]]
    state.walk(value, tree.root)
    return valid_utf8("".join(out))
