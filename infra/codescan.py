"""Derive, from the source, the AWS calls each Lambda function can make.

mypy (the project's type checker) analyses ``app.py`` and ``chalicelib/`` with its inferred
types exported, and this module walks the typed trees:

* **calls**: PynamoDB operations (typed receivers: a model class or instance, an index, a
  ``TransactWrite``/``TransactGet``), boto3 client operations (``aws.client("svc").op(...)``, a
  local bound to such a client, a helper returning one, or an injected client whose attribute or
  parameter is named after its service: ``self._kms``, ``self._sqs()``), and Powertools'
  ``DynamoDBPersistenceLayer`` (GetItem/PutItem/UpdateItem/DeleteItem on its table);
* **resources**: the model's table (and index), or the setting an argument comes from
  (``settings.tables.usage``, ``self._settings.alerts_topic_arn``), traced through constructor
  arguments when a value was injected (``UsageRepository(settings.tables.usage)``);
* **reachability**: which functions a Lambda handler can run, following references between
  functions (a call, a method passed as a callback, a decorator) with the receivers' types;
  an overridden method counts for every subclass. Import-time code counts for every Lambda.

Anything it cannot attribute becomes a *problem*, so a new call never slips through unseen.
"""

from __future__ import annotations

import importlib
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from infra.names import ROOT

OUR_PACKAGES = ("chalicelib", "app")
CLIENT_FACTORY = "chalicelib.data.aws.client"
MODEL_BASE = "pynamodb.models.Model"
INDEX_BASE = "pynamodb.indexes.Index"
TRANSACT_WRITE = "pynamodb.transactions.TransactWrite"
TRANSACT_GET = "pynamodb.transactions.TransactGet"
IDEMPOTENCY_LAYER = "DynamoDBPersistenceLayer"

# Identifier tokens that name a boto3 client's service (``self._ddb()``, ``sns_factory``).
SERVICE_TOKENS = {"dynamodb": "dynamodb", "ddb": "dynamodb", "kms": "kms", "sns": "sns",
                  "sqs": "sqs", "cloudwatch": "cloudwatch", "s3": "s3", "ssm": "ssm",
                  "secretsmanager": "secretsmanager", "sts": "sts", "events": "events"}
# Settings fields that name a stack resource.
SETTINGS_RESOURCES = {"kms_key_id": "key/secrets", "alerts_topic_arn": "topic/alerts",
                      "work_queue_url": "queue/work"}
# The service's one resource, when an argument is data (a key id stored in a sealed record).
SERVICE_DEFAULTS = {"kms": "key/secrets", "sns": "topic/alerts", "sqs": "queue/work"}
RESOURCE_ARGS = {"dynamodb": ("TableName",), "kms": ("KeyId", "SourceKeyId"),
                 "sns": ("TopicArn", "TargetArn"), "sqs": ("QueueUrl",)}
# API operations authorised under another IAM action.
IAM_ACTIONS = {("sqs", "SendMessageBatch"): ("SendMessage",),
               ("sqs", "DeleteMessageBatch"): ("DeleteMessage",),
               ("sqs", "ChangeMessageVisibilityBatch"): ("ChangeMessageVisibility",),
               ("kms", "ReEncrypt"): ("ReEncryptFrom", "ReEncryptTo")}

MODEL_CLASS_OPS = {"get": "GetItem", "batch_get": "BatchGetItem", "query": "Query",
                   "scan": "Scan", "count": "Query", "exists": "DescribeTable",
                   "describe_table": "DescribeTable", "batch_write": "BatchWriteItem",
                   "create_table": "CreateTable", "delete_table": "DeleteTable",
                   "update_ttl": "UpdateTimeToLive"}
MODEL_ITEM_OPS = {"save": "PutItem", "update": "UpdateItem", "delete": "DeleteItem",
                  "refresh": "GetItem"}
INDEX_OPS = {"query": "Query", "scan": "Scan", "count": "Query"}
TXN_WRITE_OPS = {"save": "PutItem", "update": "UpdateItem", "delete": "DeleteItem",
                 "condition_check": "ConditionCheckItem"}
TXN_GET_OPS = {"get": "GetItem"}
IDEMPOTENCY_ACTIONS = ("GetItem", "PutItem", "UpdateItem", "DeleteItem")
_CTOR_METHODS = ("__init__", "__post_init__", "__call__", "__enter__", "__exit__",
                 "__aenter__", "__aexit__", "__iter__", "__next__")
# Attributes of mypy nodes that point at definitions or types, not at syntax children.
_NOT_CHILDREN = frozenset({
    "node", "def_var", "info", "type", "unanalyzed_type", "analyzed_types", "original_def",
    "expanded", "def_or_infer_vars", "var", "original_decorators", "removed_statements",
    "removed_base_type_exprs", "type_args", "type_vars", "metaclass", "variable",
    "type_annotation", "special_form", "invalid_recursive_alias", "declared_type",
})


@dataclass(frozen=True, order=True)
class AwsCall:
    """One IAM action on one resource, made by ``function`` at ``where``."""

    service: str
    action: str
    resource: str  # "table/connections", "table/connections/index/due-index", "key/secrets"
    function: str
    where: str

    @property
    def grant(self) -> tuple[str, str, str]:
        return (self.resource, self.service, self.action)


@dataclass
class Ctx:
    function: str
    module: str
    path: str
    cls: Any = None  # mypy TypeInfo of the enclosing class
    clients: dict[int, str] = field(default_factory=dict)  # id(Var) -> service


@dataclass
class Scan:
    calls: list[AwsCall]
    edges: dict[str, set[str]]
    module_functions: set[str]
    problems: list[str]

    def reachable(self, roots: Iterable[str]) -> set[str]:
        seen: set[str] = set()
        todo = [*roots, *self.module_functions]
        while todo:
            fn = todo.pop()
            if fn in seen:
                continue
            seen.add(fn)
            todo.extend(self.edges.get(fn, ()))
        return seen

    def calls_from(self, roots: Iterable[str]) -> list[AwsCall]:
        reach = self.reachable(roots)
        return sorted(c for c in self.calls if c.function in reach)

    def missing_roots(self, roots: Iterable[str]) -> list[str]:
        known = set(self.edges) | {c.function for c in self.calls}
        return [r for r in roots if r not in known]


def grants(calls: Iterable[AwsCall]) -> dict[str, set[str]]:
    """{resource: {"service:Action", ...}} of ``calls``."""
    out: dict[str, set[str]] = defaultdict(set)
    for c in calls:
        out[c.resource].add(f"{c.service}:{c.action}")
    return dict(out)


def _sources(root: Path) -> list[tuple[str, str]]:
    paths = [root / "app.py", *sorted((root / "chalicelib").rglob("*.py"))]
    out = []
    for p in paths:
        rel = p.relative_to(root)
        module = ".".join(rel.with_suffix("").parts)
        if module.endswith(".__init__"):
            module = module[: -len(".__init__")]
        out.append((str(p), module))
    return out


@cache
def _attrs(cls: Any) -> tuple[str, ...]:
    names: list[str] = []
    for klass in cls.__mro__:
        for k, v in vars(klass).items():
            if type(v).__name__ in ("getset_descriptor", "member_descriptor") and \
                    not k.startswith("__") and k not in _NOT_CHILDREN and k not in names:
                names.append(k)
    return tuple(names)


def _children(node: Any) -> Iterator[Any]:
    from mypy import nodes

    def flat(value: Any) -> Iterator[Any]:
        if isinstance(value, nodes.Node):
            yield value
        elif isinstance(value, list | tuple):
            for v in value:
                yield from flat(v)

    kind: Any = type(node)
    for attr in _attrs(kind):
        try:
            value = getattr(node, attr)
        except AttributeError:
            continue
        yield from flat(value)


@cache
def _op_names(service: str) -> dict[str, str]:
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(n): n for n in model.operation_names}


def _runtime_tables() -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """{model class fullname: env_key}, {index class fullname: (env_key, index_name)}."""
    from pynamodb.indexes import Index
    from pynamodb.models import Model

    models_mod = importlib.import_module("chalicelib.data.models")
    tables: dict[str, str] = {}
    indexes: dict[str, tuple[str, str]] = {}
    for obj in vars(models_mod).values():
        if isinstance(obj, type) and issubclass(obj, Model) and obj is not Model:
            key = getattr(obj.Meta, "env_key", None)
            if key is None:
                continue
            tables[f"{obj.__module__}.{obj.__qualname__}"] = key
            for value in vars(obj).values():
                if isinstance(value, Index):
                    cls = type(value)
                    indexes[f"{cls.__module__}.{cls.__qualname__}"] = (key, value.Meta.index_name)
    return tables, indexes


class _Scanner:
    def __init__(self, trees: dict[str, Any], paths: dict[str, str], types: dict[Any, Any]):
        self.trees = trees
        self.paths = paths
        self.types = types
        self.tables, self.indexes = _runtime_tables()
        self.calls: list[AwsCall] = []
        self.edges: dict[str, set[str]] = defaultdict(set)
        self.problems: list[str] = []
        self.module_functions: set[str] = set()
        self.constructions: dict[str, list[tuple[Any, Ctx]]] = defaultdict(list)
        self.client_factories: dict[str, str] = {}
        self.services_created: dict[str, list[str]] = defaultdict(list)
        self.services_called: set[str] = set()
        self.classes: dict[str, Any] = {}
        self.local_names: dict[int, str] = {}  # id(nested FuncDef) -> "<outer>.<locals>.name"
        self.assigned: dict[int, list[Any]] = defaultdict(list)  # id(Var) -> assigned values
        self.injected: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.attr_users: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.consumed: set[int] = set()
        self.stores: set[int] = set()  # ids of assignment targets (a store is not a use)


    @staticmethod
    def ours(fullname: str | None) -> bool:
        return bool(fullname) and fullname.split(".", 1)[0] in OUR_PACKAGES  # type: ignore[union-attr]

    def where(self, ctx: Ctx, node: Any) -> str:
        return f"{ctx.path}:{node.line}"

    def proper(self, expr: Any) -> Any:
        from mypy.types import get_proper_type

        t = self.types.get(expr)
        return get_proper_type(t) if t is not None else None

    @staticmethod
    def has_base(info: Any, base: str) -> bool:
        return any(b.fullname == base for b in info.mro)

    def class_of(self, expr: Any, depth: int = 0) -> list[tuple[str, Any]]:
        """[(kind, TypeInfo)] of an expression: model_class, model, index, txn_write, txn_get.

        A local variable also counts every value assigned to it: mypy types it by its first
        assignment, and ``source = Model.index if ... else Model`` must count both."""
        from mypy import nodes
        from mypy.types import CallableType, Instance, TypeType, UnionType, get_proper_type

        if isinstance(expr, nodes.RefExpr) and isinstance(expr.node, nodes.TypeInfo):
            return [("model_class", expr.node)] if self.has_base(expr.node, MODEL_BASE) else []
        out: list[tuple[str, Any]] = []
        if isinstance(expr, nodes.NameExpr) and depth < 3:
            for value in self.assigned.get(id(expr.node), ()):
                for found in self.class_of(value, depth + 1):
                    if found not in out:
                        out.append(found)

        def add(t: Any) -> None:
            t = get_proper_type(t)
            if isinstance(t, UnionType):
                for item in t.items:
                    add(item)
            elif isinstance(t, CallableType) and t.is_type_obj():
                info = t.type_object()
                if self.has_base(info, MODEL_BASE):
                    out.append(("model_class", info))
            elif isinstance(t, TypeType):
                item = get_proper_type(t.item)
                if isinstance(item, Instance) and self.has_base(item.type, MODEL_BASE):
                    out.append(("model_class", item.type))
            elif isinstance(t, Instance):
                info = t.type
                for kind, base in (("model", MODEL_BASE), ("index", INDEX_BASE),
                                   ("txn_write", TRANSACT_WRITE), ("txn_get", TRANSACT_GET)):
                    if self.has_base(info, base):
                        out.append((kind, info))
                        break

        t = self.types.get(expr)
        if t is not None:
            before = list(out)
            add(t)
            out = before + [f for f in out[len(before):] if f not in before]
        return out

    def table(self, info: Any, ctx: Ctx, node: Any) -> str | None:
        key = self.tables.get(info.fullname)
        if key is None:
            self.problems.append(f"{self.where(ctx, node)}: cannot tell the table of "
                                 f"{info.fullname} (a model needs Meta.env_key)")
        return f"table/{key}" if key else None

    def record(self, service: str, op: str, resource: str | None, ctx: Ctx, node: Any) -> None:
        if resource is None:
            return
        for action in IAM_ACTIONS.get((service, op), (op,)):
            self.calls.append(AwsCall(service, action, resource, ctx.function,
                                      self.where(ctx, node)))


    def literal_client(self, expr: Any) -> str | None:
        from mypy import nodes

        if isinstance(expr, nodes.CallExpr) and isinstance(expr.callee, nodes.RefExpr) and \
                expr.callee.fullname == CLIENT_FACTORY and expr.args and \
                isinstance(expr.args[0], nodes.StrExpr):
            return str(expr.args[0].value)
        return None

    def known_client(self, expr: Any) -> str | None:
        """The service of ``aws.client("svc")`` or of a helper that returns one."""
        from mypy import nodes
        from mypy.types import CallableType

        svc = self.literal_client(expr)
        if svc or not isinstance(expr, nodes.CallExpr):
            return svc
        target = expr.callee.fullname if isinstance(expr.callee, nodes.RefExpr) else None
        t = self.proper(expr.callee)
        if isinstance(t, CallableType) and t.definition is not None:
            target = t.definition.fullname
        return self.client_factories.get(target or "")

    def client_service(self, expr: Any, ctx: Ctx) -> str | None:
        from mypy import nodes
        from mypy.types import Instance

        svc = self.known_client(expr)
        if svc:
            return svc
        if isinstance(expr, nodes.NameExpr) and id(expr.node) in ctx.clients:
            return ctx.clients[id(expr.node)]
        # A module, or an object of ours, is not a client whatever its name says.
        if isinstance(expr, nodes.RefExpr) and isinstance(expr.node, nodes.MypyFile):
            return None
        t = self.proper(expr)
        if isinstance(t, Instance) and self.ours(t.type.fullname):
            return None
        ident = None
        if isinstance(expr, nodes.CallExpr):
            expr = expr.callee
        if isinstance(expr, nodes.MemberExpr | nodes.NameExpr):
            ident = expr.name
        if ident:
            for token in re.split(r"_+", ident.lower()):
                if token in SERVICE_TOKENS:
                    return SERVICE_TOKENS[token]
        return None

    @staticmethod
    def chain(expr: Any) -> list[str]:
        from mypy import nodes

        out: list[str] = []
        while True:
            if isinstance(expr, nodes.MemberExpr):
                out.append(expr.name)
                expr = expr.expr
            elif isinstance(expr, nodes.NameExpr):
                out.append(expr.name)
                return out
            elif isinstance(expr, nodes.CallExpr):
                expr = expr.callee
            else:
                return out

    def settings_ref(self, expr: Any, ctx: Ctx, depth: int = 0) -> str | None:
        from mypy import nodes

        names = self.chain(expr)
        if "tables" in names and names.index("tables") > 0:
            return f"table/{names[names.index('tables') - 1]}"
        if names and names[0] in SETTINGS_RESOURCES:
            return SETTINGS_RESOURCES[names[0]]
        if depth > 3:
            return None
        if isinstance(expr, nodes.MemberExpr) and isinstance(expr.expr, nodes.NameExpr) and \
                expr.expr.name == "self" and ctx.cls is not None:
            param = self.init_param(ctx.cls, expr.name)
            if param is None:
                return None
            for info in [ctx.cls, *self.subclasses(ctx.cls)]:
                for call, site in self.constructions.get(info.fullname, []):
                    arg = self.argument(call, *param)
                    if arg is not None:
                        found = self.settings_ref(arg, site, depth + 1)
                        if found:
                            return found
        return None

    def init_param(self, info: Any, attr: str) -> tuple[int, str] | None:
        """(position after self, name) of the __init__ parameter stored in ``self.attr``."""
        from mypy import nodes

        for klass in info.mro:
            init = klass.names.get("__init__")
            func = getattr(init, "node", None) if init else None
            if isinstance(func, nodes.FuncDef):
                for stmt in self.walk_plain(func.body):
                    if isinstance(stmt, nodes.AssignmentStmt) and \
                            isinstance(stmt.rvalue, nodes.NameExpr):
                        for lv in stmt.lvalues:
                            if isinstance(lv, nodes.MemberExpr) and lv.name == attr and \
                                    isinstance(lv.expr, nodes.NameExpr) and lv.expr.name == "self":
                                name = stmt.rvalue.name
                                if name in func.arg_names:
                                    return func.arg_names.index(name) - 1, name
                return None
        return None

    @staticmethod
    def argument(call: Any, position: int, name: str) -> Any:
        from mypy.nodes import ARG_POS

        positional = [a for a, k in zip(call.args, call.arg_kinds, strict=True) if k == ARG_POS]
        for a, n in zip(call.args, call.arg_names, strict=True):
            if n == name:
                return a
        return positional[position] if 0 <= position < len(positional) else None

    def subclasses(self, info: Any) -> list[Any]:
        return [c for c in self.classes.values() if c is not info and info in c.mro]

    def walk_plain(self, node: Any) -> Iterator[Any]:
        stack = [node]
        while stack:
            n = stack.pop()
            yield n
            stack.extend(_children(n))


    def run(self) -> None:
        from mypy import nodes

        for tree in self.trees.values():
            for n in self.walk_plain(tree):
                if isinstance(n, nodes.ClassDef) and self.ours(n.info.fullname):
                    self.classes[n.info.fullname] = n.info
        # Helpers whose every return is a client: ``def _ddb(self): return aws.client(...)``.
        for tree in self.trees.values():
            for n in self.walk_plain(tree):
                if isinstance(n, nodes.FuncDef):
                    rets = [r for r in self.walk_plain(n.body) if isinstance(r, nodes.ReturnStmt)]
                    svcs = {self.literal_client(r.expr) for r in rets}
                    if rets and len(svcs) == 1 and None not in svcs:
                        self.client_factories[n.fullname] = svcs.pop()  # type: ignore[assignment]
        # Pass 1 records constructions (for tracing injected values); pass 2 everything else.
        for record_only in (True, False):
            self.calls.clear()
            self.edges.clear()
            self.problems.clear()
            self.injected.clear()
            self.attr_users.clear()
            self.consumed.clear()
            for module, tree in self.trees.items():
                mod_fn = f"{module}.<module>"
                self.module_functions.add(mod_fn)
                ctx = Ctx(mod_fn, module, self.paths[module])
                for stmt in tree.defs:
                    self.definition(stmt, ctx, None, record_only)
        self.finish()

    def definition(self, stmt: Any, mod_ctx: Ctx, cls: Any, record_only: bool) -> None:
        from mypy import nodes

        if isinstance(stmt, nodes.ClassDef):
            for s in stmt.defs.body:
                self.definition(s, mod_ctx, stmt.info, record_only)
            for d in stmt.decorators:
                self.visit(d, mod_ctx, record_only)
            return
        func = None
        if isinstance(stmt, nodes.Decorator):
            func = stmt.func
        elif isinstance(stmt, nodes.FuncDef):
            func = stmt
        elif isinstance(stmt, nodes.OverloadedFuncDef):
            for item in stmt.items:
                self.definition(item, mod_ctx, cls, record_only)
            if stmt.impl is not None:
                self.definition(stmt.impl, mod_ctx, cls, record_only)
            return
        if func is None:
            self.visit(stmt, mod_ctx, record_only)
            return
        ctx = Ctx(func.fullname, mod_ctx.module, mod_ctx.path, cls)
        self.edges.setdefault(func.fullname, set())
        if isinstance(stmt, nodes.Decorator):
            for d in stmt.decorators:
                self.visit(d, ctx, record_only)
        for arg in func.arguments:
            if arg.initializer is not None:
                self.visit(arg.initializer, mod_ctx, record_only)
        self.visit(func.body, ctx, record_only)

    def visit(self, root: Any, ctx: Ctx, record_only: bool) -> None:
        from mypy import nodes

        stack = [root]
        while stack:
            n = stack.pop()
            if n is not root and isinstance(n, nodes.FuncDef | nodes.Decorator):
                self.nested(n, ctx, record_only)
                continue
            if isinstance(n, nodes.CallExpr):
                self.on_call(n, ctx, record_only)
            elif isinstance(n, nodes.AssignmentStmt):
                self.on_assign(n, ctx, record_only)
            if not record_only and isinstance(n, nodes.RefExpr):
                self.on_ref(n, ctx)
            stack.extend(reversed(list(_children(n))))

    def nested(self, node: Any, ctx: Ctx, record_only: bool) -> None:
        """A def inside a function is its own node, reached when referenced (or decorated:
        decorating registers it, e.g. middleware defined inside ``install``)."""
        from mypy import nodes

        func = node.func if isinstance(node, nodes.Decorator) else node
        name = f"{ctx.function}.<locals>.{func.name}"
        self.local_names[id(func)] = name
        self.edges.setdefault(name, set())
        if isinstance(node, nodes.Decorator):
            for d in node.decorators:
                self.visit(d, ctx, record_only)
            if not record_only:
                self.add_edge(ctx, name)
        for arg in func.arguments:
            if arg.initializer is not None:
                self.visit(arg.initializer, ctx, record_only)
        inner = Ctx(name, ctx.module, ctx.path, ctx.cls, dict(ctx.clients))
        self.visit(func.body, inner, record_only)

    def on_assign(self, stmt: Any, ctx: Ctx, record_only: bool) -> None:
        from mypy import nodes

        def pair(lv: Any, rv: Any) -> None:
            if isinstance(lv, nodes.NameExpr) and lv.node is not None:
                if record_only:
                    self.assigned[id(lv.node)].append(rv)
                else:
                    svc = self.known_client(rv)
                    if svc:
                        ctx.clients[id(lv.node)] = svc
            elif isinstance(lv, nodes.TupleExpr | nodes.ListExpr) and \
                    isinstance(rv, nodes.TupleExpr | nodes.ListExpr) and \
                    len(lv.items) == len(rv.items):
                for a, b in zip(lv.items, rv.items, strict=True):
                    pair(a, b)

        for lv in stmt.lvalues:
            self.stores.add(id(lv))
            pair(lv, stmt.rvalue)

    def add_edge(self, ctx: Ctx, target: str) -> None:
        if target != ctx.function:
            self.edges[ctx.function].add(target)

    def method_targets(self, info: Any, name: str) -> list[str]:
        """``info.name`` and its overrides in subclasses (dynamic dispatch)."""
        out = []
        for klass in [info, *self.subclasses(info)]:
            for k in klass.mro:
                if name in k.names:
                    fullname = getattr(k.names[name].node, "fullname", None)
                    if fullname and self.ours(fullname) and self.ours(k.fullname):
                        out.append(fullname)
                    break
        return out

    def ref_targets(self, ref: Any) -> list[str]:
        """The functions of ours that a name or attribute reference can run."""
        from mypy import nodes
        from mypy.types import CallableType, Instance, Overloaded, TypeType, get_proper_type

        node = ref.node
        if isinstance(node, nodes.Decorator) and id(node.func) in self.local_names:
            return [self.local_names[id(node.func)]]
        if isinstance(node, nodes.FuncDef) and id(node) in self.local_names:
            return [self.local_names[id(node)]]
        if isinstance(node, nodes.FuncDef | nodes.Decorator | nodes.OverloadedFuncDef):
            if not self.ours(node.fullname):
                return []
            info = node.info if isinstance(node, nodes.FuncBase) else node.func.info
            # Module-level functions carry mypy's FakeInfo, which is falsy.
            if info and self.ours(info.fullname):
                return [node.fullname, *self.method_targets(info, node.name)]
            return [node.fullname]
        if isinstance(node, nodes.TypeInfo):
            if not self.ours(node.fullname):
                return []
            return [t for name in _CTOR_METHODS for t in self.method_targets(node, name)]
        if not isinstance(ref, nodes.MemberExpr):
            return []
        out = []
        t = self.proper(ref)
        if isinstance(t, CallableType) and t.definition is not None:
            out.append(t.definition.fullname)
        elif isinstance(t, Overloaded):
            out.extend(i.definition.fullname for i in t.items if i.definition is not None)
        recv = self.proper(ref.expr)
        infos = []
        if isinstance(recv, Instance):
            infos.append(recv.type)
        elif isinstance(recv, TypeType):
            item = get_proper_type(recv.item)
            if isinstance(item, Instance):
                infos.append(item.type)
        elif isinstance(recv, CallableType) and recv.is_type_obj():
            infos.append(recv.type_object())
        for info in infos:
            out.extend(self.method_targets(info, ref.name))
        return [o for o in out if self.ours(o)]

    def on_ref(self, ref: Any, ctx: Ctx) -> None:
        from mypy import nodes

        if isinstance(ref, nodes.MemberExpr) and isinstance(ref.expr, nodes.NameExpr) and \
                ref.expr.name == "self" and ctx.cls is not None and id(ref) not in self.stores:
            for klass in ctx.cls.mro:
                self.attr_users[(klass.fullname, ref.name)].add(ctx.function)
        if id(ref) in self.consumed:
            return
        for target in self.ref_targets(ref):
            self.add_edge(ctx, target)

    def inject(self, call: Any, info: Any, ctx: Ctx) -> None:
        """A function handed to a constructor runs where the object calls ``self.<attr>``."""
        from mypy import nodes

        init = self.init_func(info)
        params = init.arg_names[1:] if init is not None else []
        is_dataclass = "dataclass" in info.metadata
        positional = 0
        for arg, name in zip(call.args, call.arg_names, strict=True):
            param = name
            if name is None:
                param = params[positional] if positional < len(params) else None
                positional += 1
            if not isinstance(arg, nodes.RefExpr) or param is None:
                continue
            targets = self.ref_targets(arg)
            if not targets:
                continue
            attr = param if is_dataclass else self.attr_for_param(info, param)
            if attr is None:
                continue
            self.injected[(info.fullname, attr)].update(targets)
            self.consumed.add(id(arg))

    def init_func(self, info: Any) -> Any:
        from mypy import nodes

        for klass in info.mro:
            init = klass.names.get("__init__")
            func = getattr(init, "node", None) if init else None
            if isinstance(func, nodes.FuncDef):
                return func
        return None

    def attr_for_param(self, info: Any, param: str) -> str | None:
        from mypy import nodes

        init = self.init_func(info)
        if init is None:
            return None
        for stmt in self.walk_plain(init.body):
            if isinstance(stmt, nodes.AssignmentStmt) and \
                    isinstance(stmt.rvalue, nodes.NameExpr) and stmt.rvalue.name == param:
                for lv in stmt.lvalues:
                    if isinstance(lv, nodes.MemberExpr) and isinstance(lv.expr, nodes.NameExpr) \
                            and lv.expr.name == "self":
                        return str(lv.name)
        return None

    def on_call(self, call: Any, ctx: Ctx, record_only: bool) -> None:
        from mypy import nodes

        callee = call.callee
        if isinstance(callee, nodes.RefExpr) and isinstance(callee.node, nodes.TypeInfo) and \
                self.ours(callee.node.fullname):
            if record_only:
                self.constructions[callee.node.fullname].append((call, ctx))
            else:
                self.inject(call, callee.node, ctx)
            return
        if record_only:
            return
        svc = self.literal_client(call)
        if svc:
            self.services_created[svc].append(self.where(ctx, call))
        if isinstance(callee, nodes.RefExpr) and (callee.fullname or "").endswith(
                IDEMPOTENCY_LAYER):
            table_arg = self.argument(call, 0, "table_name")
            resource = self.settings_ref(table_arg, ctx) if table_arg is not None else None
            if resource is None:
                self.problems.append(f"{self.where(ctx, call)}: cannot tell the idempotency "
                                     "table (pass settings.tables.<key> down to table_name)")
            for action in IDEMPOTENCY_ACTIONS:
                self.record("dynamodb", action, resource, ctx, call)
            return
        if not isinstance(callee, nodes.MemberExpr):
            return
        recv, meth = callee.expr, callee.name
        kinds = self.class_of(recv)
        if kinds:
            for kind, info in kinds:
                self.pynamodb(kind, info, meth, call, ctx)
            return
        svc = self.client_service(recv, ctx)
        if svc:
            ops = _op_names(svc) if svc in _known_services() else {}
            if meth in ops:
                self.services_called.add(svc)
                self.boto(svc, ops[meth], call, ctx)
            return
        if "_" in meth and any(meth in _op_names(s) for s in self.services_created):
            self.problems.append(
                f"{self.where(ctx, call)}: `.{meth}(...)` looks like an AWS call on a client "
                "this scan cannot identify; name the attribute or parameter after its service "
                "(e.g. self._sqs) or call it on aws.client('<service>')")

    def pynamodb(self, kind: str, info: Any, meth: str, call: Any, ctx: Ctx) -> None:
        if kind == "model_class" and meth in MODEL_CLASS_OPS:
            self.record("dynamodb", MODEL_CLASS_OPS[meth], self.table(info, ctx, call), ctx, call)
        elif kind == "model" and meth in MODEL_ITEM_OPS:
            self.record("dynamodb", MODEL_ITEM_OPS[meth], self.table(info, ctx, call), ctx, call)
        elif kind == "index" and meth in INDEX_OPS:
            found = self.indexes.get(info.fullname)
            if found is None:
                self.problems.append(f"{self.where(ctx, call)}: index {info.fullname} is not "
                                     "an attribute of a model in chalicelib.data.models")
                return
            self.record("dynamodb", INDEX_OPS[meth], f"table/{found[0]}/index/{found[1]}",
                        ctx, call)
        elif kind in ("txn_write", "txn_get"):
            ops = TXN_WRITE_OPS if kind == "txn_write" else TXN_GET_OPS
            if meth not in ops or not call.args:
                return
            targets = [i for k, i in self.class_of(call.args[0]) if k in ("model", "model_class")]
            if not targets:
                self.problems.append(f"{self.where(ctx, call)}: cannot tell the model of this "
                                     f"transaction {meth}(); annotate the item's type")
            for target in targets:
                self.record("dynamodb", ops[meth], self.table(target, ctx, call), ctx, call)

    def boto(self, svc: str, op: str, call: Any, ctx: Ctx) -> None:
        resource = None
        for name in RESOURCE_ARGS.get(svc, ()):
            arg = self.argument(call, -1, name)
            if arg is not None:
                resource = self.settings_ref(arg, ctx)
                if resource:
                    break
        if resource is None:
            resource = SERVICE_DEFAULTS.get(svc)
        if resource is None:
            self.problems.append(f"{self.where(ctx, call)}: cannot tell which {svc} resource "
                                 f"{op} uses; pass a settings value (settings.tables.<key>)")
            return
        self.record(svc, op, resource, ctx, call)

    def finish(self) -> None:
        for (cls, attr), targets in self.injected.items():
            for user in self.attr_users.get((cls, attr), ()):
                self.edges[user].update(targets)
        for svc, sites in sorted(self.services_created.items()):
            if svc not in self.services_called:
                self.problems.append(
                    f"aws.client({svc!r}) is created ({', '.join(sites[:3])}) but no call on it "
                    "was found; name the attribute/parameter holding it after the service")


@lru_cache(maxsize=1)
def _known_services() -> frozenset[str]:
    import botocore.session

    return frozenset(botocore.session.get_session().get_available_services())


def _build(root: Path) -> tuple[dict[str, Any], dict[str, str], dict[Any, Any]]:
    from mypy import build
    from mypy.modulefinder import BuildSource
    from mypy.options import Options

    sources = _sources(root)
    opts = Options()
    opts.python_version = (3, 11)
    opts.export_types = True
    opts.preserve_asts = True
    opts.incremental = False
    opts.ignore_missing_imports = True
    opts.show_traceback = True
    result = build.build([BuildSource(p, m, None) for p, m in sources], opts)
    trees = {m: result.graph[m].tree for _, m in sources if result.graph[m].tree is not None}
    paths = {m: str(Path(p).relative_to(root)) for p, m in sources}
    return trees, paths, result.types


@lru_cache(maxsize=4)
def scan(root: Path = ROOT) -> Scan:
    """Analyse ``root``'s app.py and chalicelib/ (about ten seconds; cached per process).

    Models are read at run time from the importable ``chalicelib`` (the project's)."""
    import sys

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    trees, paths, types = _build(root)
    s = _Scanner(trees, paths, types)
    s.run()
    calls = sorted(set(s.calls))
    return Scan(calls, {k: set(v) for k, v in s.edges.items()}, s.module_functions,
                sorted(set(s.problems)))
