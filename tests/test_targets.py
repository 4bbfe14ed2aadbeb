"""Target presets: the shipped ones are valid TVM targets; users can add their own."""

import json

import pytest

import tvmq
from tvmq.errors import TargetError
from tvmq.runtime.devices import cannot_run_here
from tvmq.target import (
    TargetPreset,
    int8_activation_dtype,
    int8_dot_isa,
    int8_weights_need_7_bits,
    list_presets,
    load_target,
)

REQUIRED = [
    "host",
    "x86-avx2",
    "x86-avx512",
    "x86-vnni",
    "cuda-sm80",
    "cuda-sm90",
    "arm-cortex-a72",
    "arm-cortex-a76",
    "arm-neoverse-n1",
]


def test_required_presets_ship_and_are_valid_tvm_targets():
    presets = {p.name: p for p in list_presets()}
    assert set(REQUIRED) <= set(presets)
    for preset in presets.values():
        assert preset.description
        assert preset.tvm_target().kind.name == preset.kind


def test_arm_presets_cross_compile_with_the_aarch64_compiler():
    for name in ["arm-cortex-a72", "arm-cortex-a76", "arm-neoverse-n1"]:
        preset = load_target(name)
        assert preset.compiler == "aarch64-linux-gnu-g++"
        assert preset.arch == "aarch64"
        assert "aarch64-linux-gnu" in preset.setup or "g++-aarch64-linux-gnu" in preset.setup
    assert "+dotprod" in load_target("arm-cortex-a76").target["mattr"]
    assert "+dotprod" not in load_target("arm-cortex-a72").target["mattr"]


def test_host_is_detected_from_this_cpu():
    from tvm.target import codegen

    host = load_target("host")
    assert host.target["mcpu"] == codegen.llvm_get_system_cpu()
    assert host.target["num-cores"] >= 1
    assert cannot_run_here(host) is None


def test_builds_for_other_machines_say_why_they_cannot_run_here():
    assert "is aarch64; this machine is x86_64" in cannot_run_here(load_target("arm-cortex-a72"))
    lacking = TargetPreset("future-x86", "", {"kind": "llvm"}, cpu_features=("avx2", "no_such_isa"))
    assert cannot_run_here(lacking) == "this CPU lacks no_such_isa needed by target future-x86"


def test_unknown_name_lists_the_known_presets():
    with pytest.raises(TargetError, match=r"unknown target 'x86-avx3'; known targets: arm-cortex-a72, .*x86-vnni"):
        load_target("x86-avx3")


def test_raw_target_dict_and_json_string_are_accepted():
    preset = load_target({"kind": "llvm", "mcpu": "haswell"})
    assert preset.name == "custom" and preset.target["mcpu"] == "haswell"
    assert load_target('{"kind": "llvm", "mcpu": "znver3"}').target["mcpu"] == "znver3"
    with pytest.raises(TargetError, match="TVM rejects the target"):
        load_target({"kind": "llvm", "no-such-option": 1})


def test_user_preset_directory_adds_and_shadows_presets(tmp_path):
    (tmp_path / "my-board.json").write_text(
        json.dumps(
            {
                "description": "my board",
                "target": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a55"},
                "compiler": "aarch64-linux-gnu-g++",
            }
        )
    )
    (tmp_path / "x86-avx2.json").write_text(json.dumps({"description": "mine", "target": {"kind": "llvm"}}))
    names = {p.name: p for p in list_presets([tmp_path])}
    assert names["my-board"].target["mcpu"] == "cortex-a55"
    assert names["x86-avx2"].description == "mine"
    assert load_target("my-board", [tmp_path]).source == str(tmp_path / "my-board.json")
    assert load_target(str(tmp_path / "my-board.json")).compiler == "aarch64-linux-gnu-g++"


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        ('{"description": "x", "target": {"mcpu": "haswell"}}', "must be a JSON object with a 'kind'"),
        ('{"target": {"kind": "llvm"}, "compilr": "g++"}', "unknown preset field"),
    ],
)
def test_malformed_preset_files_name_the_file_and_problem(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(TargetError, match=message) as error:
        load_target(str(path))
    assert str(path) in str(error.value)


def test_top_level_api_exposes_target_loading():
    assert tvmq.load_target("x86-avx2").target["mcpu"] == "haswell"


@pytest.mark.parametrize(
    "preset, isa, seven_bit_weights",
    [
        ("x86-avx2", "avx2", True),  # vpmaddubsw on ymm: int16 pair sums
        ("x86-avx512", "avx512bw", True),  # the same on zmm
        ("x86-vnni", "avx512vnni", False),  # vpdpbusd sums in int32: 8-bit weights are exact
        ("arm-cortex-a76", "dotprod", False),  # sdot: s8 x s8 summed in int32
        ("arm-cortex-a72", "neon", False),  # smull: s8 x s8 products fit int16 exactly
        ("cuda-sm80", None, False),
    ],
)
def test_int8_instructions_and_weight_bits_follow_the_target(preset, isa, seven_bit_weights):
    target = load_target(preset).tvm_target()
    assert int8_dot_isa(target) == isa
    assert int8_weights_need_7_bits(target) == seven_bit_weights
    assert int8_activation_dtype(target) == ("int8" if preset.startswith("arm") else "uint8")
