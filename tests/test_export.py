"""Export and import: torchvision itself computes our function from the exported state_dict (and
we compute its function from one it made); the LiteRT and jax.export programs give
`img2imu predict`'s probabilities from raw windows."""

import json

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from img2imu_jax.classifier import (Classifier, Frontend, class_probabilities, load_classifier,
                                    save_classifier)
from img2imu_jax.models.resnet import ResNet

FRONTEND = Frontend(50.0, 64, 56)
META = {"dataset": "basicmotions", "classes": ["walking", "resting", "running", "badminton"],
        "encoder": "random init", "mode": "linear", "seconds": 2.0, "overlap": 0.5,
        "source_sample_rate": 10.0}


def randomise_batch_stats(module: nnx.Module, seed: int) -> None:
    """Non-trivial BatchNorm statistics and affine parameters, so the mapping of every BN
    leaf matters (a fresh model has mean 0, variance 1, scale 1, bias 0)."""
    rng = np.random.default_rng(seed)
    for _, bn in nnx.iter_graph(module):
        if isinstance(bn, nnx.BatchNorm):
            n = bn.mean.shape[0]
            bn.mean[...] = rng.normal(0, 0.1, n).astype(np.float32)
            bn.var[...] = rng.uniform(0.5, 2.0, n).astype(np.float32)
            bn.scale[...] = rng.uniform(0.5, 1.5, n).astype(np.float32)
            bn.bias[...] = rng.normal(0, 0.1, n).astype(np.float32)


def random_resnet(width: int, seed: int) -> ResNet:
    """A ResNet-18 with He-scaled random kernels drawn in numpy: no initialiser to compile."""
    encoder = nnx.eval_shape(lambda: ResNet(18, width=width, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(seed)
    for _, conv in nnx.iter_graph(encoder):
        if isinstance(conv, nnx.Conv):
            shape = conv.kernel.shape
            conv.kernel = nnx.Param(rng.normal(0, (2 / np.prod(shape[:3])) ** 0.5, shape)
                                    .astype(np.float32))
        elif isinstance(conv, nnx.BatchNorm):
            n = conv.mean.shape[0]
            conv.mean, conv.var = (nnx.BatchStat(np.zeros(n, np.float32)),
                                   nnx.BatchStat(np.ones(n, np.float32)))
            conv.scale, conv.bias = (nnx.Param(np.ones(n, np.float32)),
                                     nnx.Param(np.zeros(n, np.float32)))
    randomise_batch_stats(encoder, seed + 1)
    return encoder


@pytest.fixture(scope="module")
def basicmotions_windows() -> np.ndarray:
    """Real smartwatch windows: BasicMotions (bundled with sktime), 2 s at 50 Hz."""
    from img2imu_jax.imu.registry import load_dataset
    from img2imu_jax.imu.windows import make_windows

    windows = make_windows(load_dataset("basicmotions"), seconds=2.0, sample_rate=50.0)
    return windows.samples[:: max(1, len(windows.samples) // 4)][:4]


@pytest.fixture(scope="module")
def small_classifier(tmp_path_factory):
    """A saved width-8 classifier of the kind `img2imu finetune` writes."""
    classifier = Classifier(random_resnet(8, 0), len(META["classes"]), rngs=nnx.Rngs(1))
    return save_classifier(tmp_path_factory.mktemp("models") / "random_init-linear",
                           classifier, FRONTEND, META)


def test_torchvision_and_our_resnet_compute_each_others_function(basicmotions_windows,
                                                                 tmp_path):
    """Import: our encoder from a random torchvision state_dict gives torchvision's features.
    Export: after our own changes (head, BatchNorm), torchvision strict-loads the exported
    state_dict and gives our logits. Full width, as torchvision's constructors are fixed."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    from img2imu_jax.torch_weights import (load_encoder_weights, read_state_dict, to_state_dict,
                                           write_state_dict)

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=4).eval()
    for module in model.modules():  # random running statistics, as a trained model has
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    torch.save(model.state_dict(), tmp_path / "resnet18.pt")
    images = np.asarray(FRONTEND.images(basicmotions_windows))
    nchw = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        features = torch.flatten(model.avgpool(model.layer4(model.layer3(model.layer2(
            model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(nchw))))))))), 1)

    encoder = nnx.eval_shape(lambda: ResNet(18, rngs=nnx.Rngs(0)))  # no random init to pay
    load_encoder_weights(encoder, read_state_dict(tmp_path / "resnet18.pt"))
    classifier = Classifier(encoder, 4, rngs=nnx.Rngs(4))
    classifier.eval()
    forward = nnx.jit(lambda model, x: (model.encoder(x), model(x)))
    ours, _ = forward(classifier, images)
    np.testing.assert_allclose(np.asarray(ours), features.numpy(), atol=1e-4, rtol=0)

    randomise_batch_stats(classifier.encoder.layer4, 5)
    _, logits = forward(classifier, images)
    written = write_state_dict(tmp_path / "exported", to_state_dict(
        nnx.to_pure_dict(nnx.state(classifier.encoder)),
        nnx.to_pure_dict(nnx.state(classifier.head))))
    for path in written:
        exported = torchvision.models.resnet18(num_classes=4)
        exported.load_state_dict({k: torch.from_numpy(np.array(v))
                                  for k, v in read_state_dict(path).items()}, strict=True)
        with torch.no_grad():
            theirs = exported.eval()(nchw).numpy()
        np.testing.assert_allclose(theirs, np.asarray(logits), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="resnet18.pt: .* has shape"):
        load_encoder_weights(nnx.eval_shape(lambda: ResNet(18, width=8, rngs=nnx.Rngs(0))),
                             read_state_dict(tmp_path / "resnet18.pt"), "resnet18.pt")


def test_a_saved_classifier_exports_torchvisions_names_and_shapes(small_classifier, tmp_path):
    torchvision = pytest.importorskip("torchvision")
    from img2imu_jax.export import export_torchvision
    from img2imu_jax.torch_weights import read_state_dict

    paths, depth = export_torchvision(small_classifier, tmp_path / "resnet18")
    assert depth == 18 and [p.suffix for p in paths] == [".safetensors", ".pt"]
    exported = read_state_dict(paths[0])
    reference = torchvision.models.resnet18(num_classes=4).state_dict()
    assert exported.keys() == reference.keys()
    assert exported["fc.weight"].shape == (4, 512 // 8)  # width 8: a 64th of the channels
    assert exported["layer2.0.downsample.0.weight"].shape == (16, 8, 1, 1)


def test_a_pretraining_checkpoint_exports_encoder_and_moco_head(tmp_path):
    torch = pytest.importorskip("torch")
    from img2imu_jax.checkpoint import Checkpointer
    from img2imu_jax.export import export_torchvision
    from img2imu_jax.models import build_model
    from img2imu_jax.torch_weights import read_state_dict

    model = nnx.eval_shape(lambda: build_model(depth=18, width=8, head="mocov2",
                                               out_features=16, rngs=nnx.Rngs(0)))
    model.encoder = random_resnet(8, 3)  # values drawn in numpy: no initialiser to compile
    rng = np.random.default_rng(4)
    for linear in model.head.linears:
        linear.kernel = nnx.Param(rng.normal(0, 0.1, linear.kernel.shape).astype(np.float32))
        linear.bias = nnx.Param(rng.normal(0, 0.1, linear.bias.shape).astype(np.float32))
    checkpoints = Checkpointer(tmp_path / "pre", save_every=1)
    checkpoints.save(1, {"model": nnx.state(model)}, {"epoch": [0]})
    checkpoints.wait()
    checkpoints.close()
    paths, depth = export_torchvision(tmp_path / "pre", tmp_path / "out" / "enc", head=True)
    state_dict = read_state_dict(paths[0])
    assert depth == 18
    assert {k for k in state_dict if k.startswith("fc.")} == {
        "fc.0.weight", "fc.0.bias", "fc.2.weight", "fc.2.bias"}  # MoCo's Linear, ReLU, Linear
    features = np.random.default_rng(0).normal(size=(3, 64)).astype(np.float32)
    head = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16))
    head.load_state_dict({k.removeprefix("fc."): torch.from_numpy(v)
                          for k, v in state_dict.items() if k.startswith("fc.")}, strict=True)
    with torch.no_grad():
        theirs = head(torch.from_numpy(features)).numpy()
    np.testing.assert_allclose(theirs, np.asarray(model.head(features)), atol=1e-5)
    assert "fc.0.weight" not in read_state_dict(
        export_torchvision(tmp_path / "pre" / "checkpoints", tmp_path / "enc")[0][0])


def test_stablehlo_artifact_gives_predicts_probabilities(small_classifier, basicmotions_windows,
                                                         tmp_path):
    from img2imu_jax import cli
    from img2imu_jax.export import load_stablehlo

    assert cli.main(["export", str(small_classifier), "--to", "stablehlo", "-o",
                     str(tmp_path / "clf")]) == 0
    path = tmp_path / "clf.jax_export"
    classifier, frontend, _ = load_classifier(small_classifier)
    expected = class_probabilities(classifier, frontend, basicmotions_windows)
    program = load_stablehlo(path)
    np.testing.assert_allclose(np.asarray(program.call(basicmotions_windows)), expected,
                               atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(program.call(basicmotions_windows[:1])),
                               expected[:1], atol=1e-5, rtol=0)  # any batch size
    described = json.loads((tmp_path / "clf.jax_export.json").read_text())
    assert described["classes"] == META["classes"] and described["input"]["shape"][1] == 100


def test_litert_model_gives_predicts_probabilities(small_classifier, tmp_path):
    """On broadband windows. On real windows the two differ up to ~2e-3: their quietest
    spectrogram bins (which set each axis's min-max scaling) are float32 rounding noise of the
    DFT, and TFLite's conv rounds differently from XLA's (the network alone agrees to 2e-6)."""
    pytest.importorskip("ai_edge_litert")
    from img2imu_jax.export import export_litert, litert_probabilities

    path = export_litert(small_classifier, tmp_path / "clf.tflite")
    windows = np.random.default_rng(0).normal(size=(3, 100, 3)).astype(np.float32)
    classifier, frontend, _ = load_classifier(small_classifier)
    expected = class_probabilities(classifier, frontend, windows)
    np.testing.assert_allclose(litert_probabilities(path, windows), expected, atol=1e-5, rtol=0)
    described = json.loads((tmp_path / "clf.tflite.json").read_text())
    assert described["input_shape"] == [1, 100, 3] and described["nfft"] == 64


def test_int8_litert_is_calibrated_on_training_subjects_and_scored_on_the_test_fold(
        small_classifier, tmp_path, capsys):
    """The recorded macro-F1s are sklearn's on the test subjects' windows, of the float
    classifier and of the int8 program; the program holds int8 weights."""
    pytest.importorskip("ai_edge_litert")
    from ai_edge_litert.interpreter import Interpreter
    from sklearn.metrics import f1_score

    from img2imu_jax import cli
    from img2imu_jax.export import export_litert, litert_probabilities
    from img2imu_jax.imu.registry import load_dataset
    from img2imu_jax.imu.windows import make_windows

    with pytest.raises(ValueError, match="does not record its data and fold"):
        export_litert(small_classifier, tmp_path / "old.tflite", int8=True)
    windows = make_windows(load_dataset("basicmotions"), seconds=2.0, sample_rate=50.0)
    subjects = np.unique(windows.subjects)
    tested = subjects[::10]  # 8 of the 80 cases, every class among them
    classifier, _, _ = load_classifier(small_classifier)
    saved = save_classifier(tmp_path / "clf", classifier, FRONTEND, META | {
        "classes": list(windows.classes), "source": {"dataset": "basicmotions", "data_dir": "", "generic_sample_rate": 0.0,
                   "label_rule": "single"},
        "train_subjects": np.setdiff1d(subjects, tested).tolist(),
        "test_subjects": tested.tolist()})
    assert cli.main(["export", str(saved), "--to", "litert", "--int8", "-o",
                     str(tmp_path / "q")]) == 0
    assert "int8: macro-F1 on the saved fold's 72 test windows" in capsys.readouterr().out
    path = tmp_path / "q.tflite"
    found = json.loads((tmp_path / "q.tflite.json").read_text())["int8"]
    test = np.isin(windows.subjects, tested)
    labels, samples = windows.labels[test], windows.samples[test]
    assert found["test_windows"] == 72 and found["calibration_windows"] == 256
    floats = class_probabilities(classifier, FRONTEND, samples).argmax(-1)
    ints = litert_probabilities(path, samples).argmax(-1)
    assert found["macro_f1_float"] == pytest.approx(f1_score(labels, floats, average="macro"))
    assert found["macro_f1_int8"] == pytest.approx(f1_score(labels, ints, average="macro"))
    assert found["agreement"] == pytest.approx(np.mean(floats == ints))
    interpreter = Interpreter(model_path=str(path))
    kinds = {d["dtype"] for d in interpreter.get_tensor_details()}
    assert np.int8 in kinds and np.float32 in kinds  # float input and output around int8


def test_init_starts_pretraining_and_finetuning_from_a_state_dict(small_classifier, tmp_path):
    pytest.importorskip("safetensors")
    from img2imu_jax import pretrain
    from img2imu_jax.config import base_config, validate
    from img2imu_jax.finetune.config import finetune_base_config
    from img2imu_jax.finetune.results import default_encoders
    from img2imu_jax.methods import get_method
    from img2imu_jax.torch_weights import to_state_dict, write_state_dict

    source, _, _ = load_classifier(small_classifier)  # width 8, non-trivial BatchNorm
    path = write_state_dict(tmp_path / "w", to_state_dict(
        nnx.to_pure_dict(nnx.state(source.encoder))))[0]
    expected = nnx.to_pure_dict(nnx.state(source.encoder))
    config = base_config()
    config.model.width, config.init = 8, f"torchvision:{path}"
    validate(config)
    started = pretrain.initial_state(config, get_method(config), optax.identity())["model"][
        "encoder"]
    tuned = finetune_base_config()
    tuned.model.width, tuned.init = 8, config.init
    encoders = default_encoders(tuned)
    assert list(encoders) == ["torchvision init", "random init"]
    for encoder in (started, nnx.state(encoders["torchvision init"])):
        jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(encoder), expected)
    for bad, message in [("imagenet:x.pt", "must be '' or 'torchvision:PATH'"),
                         (f"torchvision:{tmp_path}/none.pt", "none.pt does not exist")]:
        config.init = bad
        with pytest.raises(ValueError, match=message):
            validate(config)


def test_a_remote_export_output_is_a_one_line_error_not_a_local_folder(tmp_path, monkeypatch):
    from img2imu_jax.export import export_litert, export_stablehlo, export_torchvision

    monkeypatch.chdir(tmp_path)
    for export, out in [(export_stablehlo, "gs://b/x"), (export_litert, "gs://b/x"),
                        (export_torchvision, "s4://b/x")]:
        with pytest.raises(ValueError, match="must be a local path"):
            export(tmp_path / "no_classifier", out)
    assert not any(tmp_path.iterdir())
