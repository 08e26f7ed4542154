"""FastAPI's answers about a parameter's declaration, asked once (`wasmgate._asgi.once_per_object`).

FastAPI asks, on every request and for every parameter, whether its annotation is a sequence,
whether it is a model of parameters and under which request keys it is read; the adapter
answers each once per declaration. These run natively, under the FastAPI the test extra
installs; the differential suite (tests/fastapi_compat) runs the adapter in the sandbox.
(No `from __future__ import annotations` here: FastAPI must see the annotations themselves.)
"""

from typing import Annotated

from fastapi import Body, Cookie, Depends, FastAPI, Header, Query
from pydantic import AliasChoices, BaseModel

from fastapi.testclient import TestClient

from wasmgate._asgi import _PER_PARAMETER, _ask_per_parameter, once_per_object


def _parameters_app() -> FastAPI:
    class Filters(BaseModel):
        limit: int = 10
        tags: list[str] = []

    def shared(x_token: Annotated[str | None, Header()] = None) -> str | None:
        return x_token

    app = FastAPI()

    @app.get("/items/{item_id}")
    def read(
        item_id: int,
        q: str | None = None,
        many: Annotated[list[int], Query()] = [],
        aliased: Annotated[str, Query(alias="other-name")] = "",
        choices: Annotated[str, Query(validation_alias=AliasChoices("one", "two"))] = "",
        user_agent: Annotated[str | None, Header()] = None,
        x_raw: Annotated[str | None, Header(convert_underscores=False)] = None,
        session: Annotated[str | None, Cookie()] = None,
        filters: Annotated[Filters, Query()] = None,
        token: str | None = Depends(shared),
    ) -> dict:
        return {}

    @app.post("/bodies")
    def bodies(a: Annotated[int, Body()], b: Annotated[list[str], Body(embed=True)] = []) -> dict:
        return {}

    return app


def _fields(app: FastAPI) -> list:
    fields, pending = [], [route.dependant for route in app.routes if hasattr(route, "dependant")]
    while pending:
        dependant = pending.pop()
        for kind in ("path_params", "query_params", "header_params", "cookie_params", "body_params"):
            fields.extend(getattr(dependant, kind))
        pending.extend(dependant.dependencies)
    return fields


def test_answers_per_parameter_are_fastapis_and_computed_once():
    from fastapi.dependencies import utils

    fields = _fields(_parameters_app())
    assert len(fields) >= 12
    for name in _PER_PARAMETER:
        real = getattr(utils, name)
        while getattr(real, "_wasmgate", False):  # another test's app may have installed it
            real = real.__wrapped__
        calls = []

        def counted(obj, real=real, **options):
            calls.append((id(obj), repr(options)))
            return real(obj, **options)

        once = once_per_object(counted)
        for field in fields:
            subject = field.field_info.annotation if name == "field_annotation_is_sequence" else field
            options = [{"convert_underscores": flag} for flag in (True, False)] if name == "_get_param_aliases" else [{}]
            for option in options:
                assert once(subject, **option) == real(subject, **option) == once(subject, **option), (name, field)
        assert len(calls) == len(set(calls)), name  # each object and set of options asked once


def test_a_question_that_raises_is_asked_again():
    calls = []

    def flaky(obj):
        calls.append(obj)
        if len(calls) == 1:
            raise ValueError("first time")
        return len(calls)

    once, subject = once_per_object(flaky), object()
    try:
        once(subject)
    except ValueError:
        pass
    assert once(subject) == 2 and once(subject) == 2 and len(calls) == 2


def test_asked_at_build_time_a_request_finds_every_answer(monkeypatch):
    from fastapi.dependencies import utils

    app = _parameters_app()
    asked: list[str] = []
    for name in _PER_PARAMETER:
        real = getattr(utils, name)

        def counted(obj, real=real, name=name, **options):
            asked.append((name, getattr(obj, "name", obj), tuple(options.items())))
            return real(obj, **options)

        monkeypatch.setattr(utils, name, once_per_object(counted))
    for route in app.routes:
        if hasattr(route, "dependant"):
            _ask_per_parameter(route.dependant)
    assert {name for name, _, _ in asked} == set(_PER_PARAMETER)
    before = len(asked)
    client = TestClient(app)
    answer = client.get("/items/3", params={"q": "x", "many": [1, 2]}, headers={"user-agent": "t", "x_raw": "r"})
    assert answer.status_code == 200
    assert client.post("/bodies", json={"a": 1, "b": ["x"]}).status_code == 200
    assert asked[before:] == []  # every question the requests asked was answered already


class _Callable:
    def __call__(self):
        return 1


class _AsyncCallable:
    async def __call__(self):
        return 1


class _GeneratorCallable:
    def __call__(self):
        yield 1


def _callables() -> list:
    import functools

    def plain():
        return 1

    async def coroutine():
        return 1

    def generator():
        yield 1

    async def async_generator():
        yield 1

    @functools.wraps(coroutine)
    def wrapped(*args, **kwargs):
        return coroutine(*args, **kwargs)

    return [plain, coroutine, generator, async_generator, functools.partial(coroutine), functools.partial(generator),
            wrapped, _Callable(), _AsyncCallable(), _GeneratorCallable(), _Callable, dict, len, None]


def test_answers_per_callable_are_fastapis_and_one_for_every_module_asking():
    import importlib

    from fastapi.dependencies import models

    from wasmgate._asgi import _ASKING_PER_CALLABLE, _PER_CALLABLE, _answer_per_parameter_once

    _answer_per_parameter_once()
    modules = [importlib.import_module(name) for name in _ASKING_PER_CALLABLE]
    for name in _PER_CALLABLE:
        once = getattr(models, name)
        assert getattr(once, "_wasmgate", False), name
        assert all(getattr(module, name) is once for module in modules), name  # asked anywhere, answered everywhere
        real = once.__wrapped__
        for call in _callables():
            assert once(call) == real(call) == once(call), (name, call)
    kinds = {name: [getattr(models, name)(call) for call in _callables()] for name in _PER_CALLABLE}
    assert kinds["_is_coroutine_callable"][:2] == [False, True] and kinds["_is_gen_callable"][2] is True
    assert kinds["_is_async_gen_callable"][3] is True and kinds["_is_coroutine_callable"][8] is True


def test_callables_asked_at_build_time_a_request_asks_nothing_again(monkeypatch):
    import importlib

    from wasmgate._asgi import _ASKING_PER_CALLABLE, _PER_CALLABLE

    asked: list[tuple[str, object]] = []
    modules = [importlib.import_module(name) for name in _ASKING_PER_CALLABLE]
    for name in _PER_CALLABLE:
        real = getattr(modules[0], name)
        while getattr(real, "_wasmgate", False):
            real = real.__wrapped__

        def counted(call, real=real, name=name):
            asked.append((name, call))
            return real(call)

        once = once_per_object(counted)
        for module in modules:
            monkeypatch.setattr(module, name, once)

    def session():
        yield "s"

    async def user(token: str = Depends(session)) -> str:
        return token

    app = FastAPI()

    @app.get("/me")
    async def me(name: str = Depends(user)) -> dict:
        return {"name": name}

    for route in app.routes:
        if hasattr(route, "dependant"):
            _ask_per_parameter(route.dependant)
    before = len(asked)
    assert {name for name, _ in asked} == set(_PER_CALLABLE)
    assert TestClient(app).get("/me").json() == {"name": "s"}
    assert asked[before:] == []
