"""Inference on a mesh, on the 8 simulated CPU devices and conftest's trained tiny checkpoint: a model
loaded with fsdp=4 x tensor=2 holds only its shards on each device (read from the arrays' addressable
shards), its KV cache is sharded (batch over data and fsdp, kv heads over tensor), and greedy
generate, gist and streaming give the single-device model's tokens exactly."""
import jax
import numpy as np
import pytest
from flax import nnx, traverse_util
from jax.sharding import NamedSharding, PartitionSpec

from data_pipelines.records import shards as records
from pegasus_jax.errors import ConfigError
from pegasus_jax.infer.api import Pegasus

GREEDY = {"temperature": 0.0, "max_new_tokens": 24}


@pytest.fixture(scope="module")
def models(reference):
    return Pegasus.load(str(reference)), Pegasus.load(str(reference), mesh="fsdp=4,tensor=2")


@pytest.fixture(scope="module")
def videos(corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("mesh-videos")
    paths = []
    for i, ex in zip(range(4), records.read_all(corpus["heldout"])):
        (root / f"clip{i}.mp4").write_bytes(ex.video)
        paths.append(str(root / f"clip{i}.mp4"))
    return paths


def _mesh_share(array) -> int:
    """How many ways the array is split: the product of the mesh axes its spec names."""
    mesh = array.sharding.mesh
    axes = [a for entry in array.sharding.spec if entry for a in ((entry,) if isinstance(entry, str) else entry)]
    return int(np.prod([mesh.shape[a] for a in axes]))


def test_each_device_holds_only_its_shards(models):
    _, sharded = models
    params = traverse_util.flatten_dict(nnx.state(sharded.model, nnx.Param).to_pure_dict())
    assert dict(jax.tree.leaves(params)[0].sharding.mesh.shape) == {"data": 1, "fsdp": 4, "context": 1, "tensor": 2}
    two_way = 0
    for path, x in params.items():
        share = _mesh_share(x)
        assert len(x.addressable_shards) == 8
        assert all(s.data.size * share == x.size for s in x.addressable_shards), path
        if share == 8:
            two_way += 1
    decoder_kernels = [p for p in params if p[0] == "decoder" and p[-1] == "kernel"]
    assert all(_mesh_share(params[p]) == 8 for p in decoder_kernels), "decoder kernels split over fsdp x tensor"
    total = sum(x.size for x in params.values())
    on_device0 = sum(s.data.size for x in params.values() for s in x.addressable_shards if s.device == jax.devices()[0])
    print(f"{two_way}/{len(params)} parameters split 8 ways; device 0 holds {on_device0 / total:.3f} of the elements")
    assert two_way >= len(decoder_kernels) > 0
    # The norms and biases stay replicated; everything else is split, so a device holds far less than the model.
    assert on_device0 < 0.25 * total


def test_kv_cache_is_sharded_batch_over_fsdp_and_kv_heads_over_tensor(models):
    _, sharded = models
    gen = sharded.generator
    prompt = np.ones((4, 32), np.int32)
    _, cache, _ = gen._prefill(gen.state, np.zeros((4, 0, gen.width), np.float32), np.zeros((4, 0), bool),
                               prompt, np.ones((4, 32), bool), 64)
    want = NamedSharding(gen.mesh, PartitionSpec(None, ("data", "fsdp"), None, "tensor", None))
    for name in ("k", "v"):
        assert cache[name].sharding.is_equivalent_to(want, 5), cache[name].sharding


def test_greedy_generate_and_gist_equal_single_device(models, videos):
    one, sharded = models
    items = [(v, "Describe the video.") for v in videos]
    want = one.generate_batch(items, **GREEDY)
    assert sharded.generate_batch(items, **GREEDY) == want
    assert any(want), want  # the trained model says something
    assert sharded.gist(videos[0], temperature=0.0) == one.gist(videos[0], temperature=0.0)
    streamed = "".join(sharded.stream(videos[1], "Describe the video.", **GREEDY))
    assert streamed == one.generate(videos[1], "Describe the video.", **GREEDY)


def test_bad_mesh_is_a_config_error(reference):
    with pytest.raises(ConfigError, match="unknown axis 'model'"):
        Pegasus.load(str(reference), mesh="model=2")
    with pytest.raises(ConfigError, match="expected AXIS=SIZE"):
        Pegasus.load(str(reference), mesh="fsdp4")
