"""Running and benchmarking a package on a TVM RPC server (a board), tested on loopback only."""

import numpy as np
import onnx_models
import pytest

import tvmq
from tvmq.errors import PackageError, TvmqError
from tvmq.runtime.remote import RemotePackage, parse_address


@pytest.fixture(scope="module")
def server():
    from tvm import rpc

    server = rpc.Server(host="127.0.0.1", port=9190, port_end=9290, silent=True)
    yield f"127.0.0.1:{server.port}"
    server.terminate()


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory):
    model = tvmq.load_model(onnx_models.mlp())
    path = tmp_path_factory.mktemp("rpc") / "mlp"
    tvmq.compile_model(model, "host", path)
    return path


def test_a_package_run_over_rpc_gives_the_local_outputs(server, package_dir):
    local = tvmq.load_package(package_dir)
    inputs = local.random_inputs(0)
    remote = RemotePackage.connect(package_dir, server)
    try:
        # The same library bytes run by the same runtime in another process: identical.
        for name, value in remote.run(inputs).items():
            assert np.array_equal(value, local.run(inputs)[name])
        result = remote.benchmark(repeat=2, threads=1, min_repeat_ms=1)
        assert result.threads == 1 and result.repeat == 2 and result.median_ms > 0
    finally:
        del remote  # the server serves one session at a time


def test_cli_runs_and_benchmarks_over_rpc(server, package_dir, cli, tmp_path):
    np.save(tmp_path / "x.npy", tvmq.load_package(package_dir).random_inputs(0)["x"])
    result = cli("run", package_dir, "--rpc", server, "--input", tmp_path / "x.npy")
    assert result.code == 0, result.err
    assert f"(ran on {server})" in result.out
    result = cli("bench", package_dir, "--rpc", server, "--repeat", "2", "--json", tmp_path / "b.json")
    assert result.code == 0, result.err
    assert f"server   {server}" in result.out
    assert '"rpc"' in (tmp_path / "b.json").read_text()


def test_a_modified_library_is_never_uploaded(server, package_dir, tmp_path):
    import shutil

    copy = tmp_path / "pkg"
    shutil.copytree(package_dir, copy)
    (copy / "model.so").write_bytes(b"\x7fELF tampered")
    with pytest.raises(PackageError, match="does not match its package metadata"):
        RemotePackage.connect(copy, server)


@pytest.mark.parametrize("address", ["board", "board:", ":9090", "board:port"])
def test_a_server_address_must_be_host_and_port(address):
    with pytest.raises(TvmqError, match="is not HOST:PORT"):
        parse_address(address)


def test_an_unreachable_server_is_named(package_dir):
    with pytest.raises(PackageError, match="cannot connect to the RPC server at 127.0.0.1:1"):
        RemotePackage.connect(package_dir, "127.0.0.1:1")
