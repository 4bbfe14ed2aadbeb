"""A binding-level view of a Relax function's dataflow block, for the quantization passes:
what each variable is bound to and who uses it."""

from __future__ import annotations

from collections import defaultdict

from tvm import relax

from tvmq.errors import QuantizationError


def _vars_in(expr) -> list[relax.Var]:
    if isinstance(expr, relax.Var):
        return [expr]
    if isinstance(expr, relax.Call):
        return [v for arg in expr.args for v in _vars_in(arg)]
    if isinstance(expr, relax.Tuple):
        return [v for field in expr.fields for v in _vars_in(field)]
    if isinstance(expr, relax.TupleGetItem):
        return _vars_in(expr.tuple_value)
    return []


class DataflowGraph:
    """The bindings of `main`'s single dataflow block, with each variable's users."""

    def __init__(self, func: relax.Function):
        blocks = func.body.blocks
        if len(blocks) != 1 or not isinstance(blocks[0], relax.DataflowBlock):
            raise QuantizationError("only models whose main function is one dataflow block can be quantized")
        self.func = func
        self.params = list(func.params)
        self.bindings = list(blocks[0].bindings)
        self.value = {b.var: b.value for b in self.bindings}
        self._var_of = {b.value: b.var for b in self.bindings}
        self.users: dict[relax.Var, list[relax.Var]] = defaultdict(list)
        for binding in self.bindings:
            for var in _vars_in(binding.value):
                self.users[var].append(binding.var)
        self.outputs = set(_vars_in(func.body.body))
        for binding in self.bindings:  # block outputs bound to other vars count as outputs too
            if binding.var in self.outputs and isinstance(binding.value, relax.Var):
                self.outputs.add(binding.value)

    def only_user(self, var: relax.Var) -> relax.Var | None:
        """The binding var of the single call using `var`, if `var` has exactly one use."""
        users = self.users.get(var, [])
        if len(users) != 1 or var in self.outputs:
            return None
        return users[0]

    def has_one_use(self, value: relax.Expr) -> bool:
        """True if the variable bound to `value` (an expression of this block) is used once."""
        var = self._var_of.get(value)
        return var is not None and self.only_user(var) is not None
