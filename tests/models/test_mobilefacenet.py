"""The MobileFaceNet zoo entry has the paper's size and compute (Chen et al. 2018, Table 1 / text:
0.99 M parameters, 221 M multiply-adds at 112x112) and gives unit-length embeddings on export."""
import json

import torch

from leanface.cli import main
from leanface.models import create_model
from leanface.models.flops import count_flops


def test_paper_size_and_compute():
    net = create_model("mobilefacenet")
    report = count_flops(net, (3, 112, 112))
    convs = {n for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)}
    conv_macs = sum(v for k, v in report.by_module.items() if k in convs)
    assert abs(report.params / 1e6 - 0.99) / 0.99 < 0.02, report.params
    assert abs(conv_macs / 1e6 - 221) / 221 < 0.01, conv_macs


def test_embeddings_and_info(capsys):
    net = create_model("mobilefacenet")
    (emb,) = net.forward_export(torch.randn(3, 3, 112, 112))
    assert emb.shape == (3, 128)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    assert main(["info", "mobilefacenet", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["input_size"] == [112, 112] and abs(info["gflops_2x"] - 2 * info["gflops"]) < 1e-3
