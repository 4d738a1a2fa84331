"""Weight averaging (`leanface average`, `average_weights`) and the per-epoch weights a run keeps for it."""
import hashlib

import torch

from leanface.cli import main
from leanface.models import build_model, get_config, read_checkpoint, save_checkpoint
from leanface.train import AugmentConfig, TrainConfig, average_weights, train


def _weights(tmp_path, name: str, model: str, seed: int):
    torch.manual_seed(seed)
    net = build_model(get_config(model))
    for m in net.modules():  # BatchNorm statistics differ between the files too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.num_batches_tracked.fill_(seed)
    path = tmp_path / name
    save_checkpoint(path, get_config(model), net.state_dict())
    return path, net.state_dict()


def test_the_average_is_the_mean_of_every_float_tensor(tmp_path):
    (a, sa), (b, sb), (c, sc) = (_weights(tmp_path, f"{k}.pt", "scrfd_500m", seed) for k, seed in
                                 (("a", 1), ("b", 2), ("c", 3)))
    cfg, avg = average_weights([a, b, c])
    assert cfg == get_config("scrfd_500m")
    for k, v in avg.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (sa[k] + sb[k] + sc[k]) / 3, rtol=1e-6, atol=1e-7)
        else:
            assert torch.equal(v, sc[k])  # batch counts: the last file's
    assert any("running_mean" in k for k in avg)


def test_cli_average_writes_a_new_file_and_refuses_what_would_lose_data(tmp_path, capsys):
    a, _ = _weights(tmp_path, "a.pt", "scrfd_500m", 1)
    b, _ = _weights(tmp_path, "b.pt", "scrfd_500m", 2)
    other, _ = _weights(tmp_path, "other.pt", "scrfd_500m_kps", 3)
    digest = hashlib.sha256(a.read_bytes()).hexdigest()
    out = tmp_path / "avg.pt"
    assert main(["average", str(a), str(b), "-o", str(out)]) == 0
    assert read_checkpoint(out)[0] == get_config("scrfd_500m")
    assert main(["average", str(a), str(b), "-o", str(a)]) == 2  # never over an input
    assert main(["average", str(a), str(other), "-o", str(tmp_path / "x.pt")]) == 2  # two models
    assert main(["average", str(a), "-o", str(tmp_path / "y.pt")]) == 2  # nothing to average
    assert main(["average", str(a), str(b), "-o", str(out)]) == 2  # an existing output without --exist-ok
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and "other.pt" in err[1] and all(line.startswith("leanface average: error:") for line in err)
    assert hashlib.sha256(a.read_bytes()).hexdigest() == digest
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "y.pt").exists()


def test_a_run_keeps_each_epochs_weights_when_asked(wider_train, tmp_path):
    cfg = TrainConfig(procs=1, epochs=2, batch_size=1, augment=AugmentConfig(img_size=64), workers=0,
                      save_epochs=True, out_dir=str(tmp_path / "run"))
    result = train(cfg, "scrfd_500m", wider_train[:1], progress=False)
    kept = sorted((tmp_path / "run" / "epochs").glob("*.pt"))
    assert [p.name for p in kept] == ["e001.pt", "e002.pt"]
    last, final = read_checkpoint(kept[-1])[1], read_checkpoint(result.weights)[1]
    assert all(torch.equal(last[k], final[k]) for k in final)
    assert not all(torch.equal(read_checkpoint(kept[0])[1][k], final[k]) for k in final)
