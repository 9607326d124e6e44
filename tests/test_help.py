"""help() for a newcomer: every public name documented, and help(arena.Arena) short enough to read."""
import inspect
import pydoc

import pytest

import arena
import arena.harness.check
import arena.harness.hunt
import arena.policy.rules
import arena.spaces
import arena.sysmem

# The modules a user imports from, and the names each makes public: __all__
# where it has one, else the classes and functions it defines itself.
MODULES = (arena, arena.sysmem, arena.spaces, arena.harness.check, arena.policy.rules, arena.harness.hunt)
MEMORY_INTERFACE = ("reserve", "reserve_exact", "commit", "decommit", "release")


def public_names(module):
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    return [name for name, value in vars(module).items()
            if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
            and value.__module__ == module.__name__]


def ours(obj) -> bool:
    return getattr(obj, "__module__", "").split(".")[0] == "arena"


def members(cls):
    """The public methods and properties of ``cls`` that arena defines (itself or in a base of its own)."""
    for name in dir(cls):
        if name.startswith("_"):
            continue
        owner = next(base for base in cls.__mro__ if name in vars(base))
        value = vars(owner)[name]
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if ours(owner) and (inspect.isfunction(value) or isinstance(value, property)):
            yield name, value


def public_api():
    seen = set()
    for module in MODULES:
        for name in public_names(module):
            obj = getattr(module, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and ours(obj) and id(obj) not in seen:
                seen.add(id(obj))
                yield f"{module.__name__}.{name}", obj


API = dict(public_api())


@pytest.mark.backend_independent
def test_the_walk_covers_the_public_api():
    # A walk that found nothing would pass; these must be among what it checks.
    for name in ("arena.Arena", "arena.HeapArenas", "arena.Layout", "arena.sysmem.CffiMemory", "arena.sysmem.default",
                 "arena.spaces.ScriptedMemory", "arena.harness.check.verify", "arena.policy.rules.resolve", "arena.harness.hunt.hunt"):
        assert name in API
    assert len(API) > 60


@pytest.mark.parametrize("name", sorted(API))
@pytest.mark.backend_independent
def test_every_public_class_function_method_and_property_has_a_docstring(name):
    obj = API[name]
    missing = [] if (inspect.getdoc(obj) or "").strip() else [name]
    if inspect.isclass(obj):
        for attr, value in members(obj):
            doc = value.__doc__ if isinstance(value, property) else inspect.getdoc(getattr(obj, attr))
            if not (doc or "").strip():
                missing.append(f"{name}.{attr}")
    assert not missing, f"no docstring: {', '.join(missing)}"


@pytest.mark.parametrize("cls", [arena.sysmem.CffiMemory, arena.sysmem.CtypesMemory, arena.spaces.ScriptedMemory])
@pytest.mark.backend_independent
def test_help_of_a_memory_layer_documents_its_interface(cls):
    # CffiMemory holds reserve, commit, decommit and release as closures on each
    # instance: help() of the class must still show them documented.
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    for op in MEMORY_INTERFACE:
        assert f"{op}(self, " in text
        assert inspect.getdoc(getattr(cls, op)), op


@pytest.mark.needs_shim
def test_the_closures_of_a_cffi_layer_carry_the_documented_contract():
    memory = arena.sysmem.CffiMemory()
    for op in MEMORY_INTERFACE:
        assert inspect.getdoc(getattr(memory, op)) == inspect.getdoc(getattr(arena.sysmem.Memory, op)), op


@pytest.mark.backend_independent
def test_help_of_arena_is_short_and_shows_layouts_in_a_line():
    text = pydoc.render_doc(arena.Arena, renderer=pydoc.plaintext)
    # The signature's default layout is one short line, not 128 hints in decimal.
    assert "<Layout '64-bit': 64 address bits, max_mem 0x7fffffffff, page 8 KiB, growth step 256 MiB, " \
           "128 hints from 0xc000000000>" in text
    assert "824633720832" not in text
    assert len(text) < 12_000
    for word in ("layout", "rule", "memory", "start", "initial_size", "history", "fixed", "legacy", "go1.9", "strict",
                 "TypeError", "ValueError", "ReservationFailed"):
        assert word in inspect.getdoc(arena.Arena), word


@pytest.mark.backend_independent
def test_layout_repr_summarises_the_hints():
    assert repr(arena.LAYOUT_32) == ("<Layout '32-bit': 32 address bits, max_mem 0xffffffff, page 8 KiB, "
                                     "growth step 256 MiB, first hint above the program break>")
    one = arena.Layout(name="one", address_bits=64, max_mem=(1 << 39) - 1, first_hints=(0xC000000000,))
    assert repr(one).endswith("1 hint from 0xc000000000>")


@pytest.mark.backend_independent
def test_stats_say_they_are_cumulative():
    assert "cumulative" in inspect.getdoc(arena.Stats).lower()
    assert "cumulative" in arena.Arena.stats.__doc__.lower()
