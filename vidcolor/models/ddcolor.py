"""Kang, Yang, Chu, Zhang, Liu, Xie, "DDColor: Towards Photo-Realistic Image
Colorization via Dual Decoders" (ICCV 2023), official layout.

The network of the paper with the parameter names and shapes of the official
checkpoints, so users' files load strictly by key: ``ddcolor_paper_tiny.pth``
for ``ddcolor-tiny`` (ConvNeXt-T encoder); ``ddcolor_modelscope.pth``,
``ddcolor_paper.pth`` or ``ddcolor_artistic.pth`` for ``ddcolor-large``
(ConvNeXt-L). Written from the paper and the checkpoint layout:

* ``mean``, ``std``: the ImageNet normalisation of the gray RGB input, kept as
  buffers in the checkpoints (so they are read from the weights, not assumed).
* ``encoder.arch``: ConvNeXt (stem, three downsamplers, four stages of blocks
  with depthwise 7x7 convolutions, layer norm, an inverted MLP and layer
  scale). ``norm0`` .. ``norm3`` normalise a copy of each stage's output for
  the decoder; the stages themselves continue from the unnormalised features.
  ``norm`` is the classifier's pooled-feature norm of ConvNeXt: the files hold
  it, colorization never uses it.
* ``decoder.layers``: the pixel decoder, three U-Net blocks from stride 32 to
  4; each upsamples by a 1x1 convolution and pixel shuffle (with the one-pixel
  blur that removes shuffle checkerboards), joins the batch-normalised encoder
  feature of that scale and convolves 3x3. ``decoder.last_shuf`` upsamples the
  stride-4 features x4 to full resolution: the image embedding.
* ``decoder.color_decoder``: the colour decoder. 100 learned colour queries
  attend, layer by layer, to the pixel decoder's three scales in turn
  (strides 16, 8, 4; 9 layers: cross-attention, self-attention, MLP, each
  post-norm), with sine position embeddings and a per-scale level embedding.
  Each query's embedding dotted with the image embedding gives one of 100
  colour maps.
* ``refine_net``: a 1x1 convolution over the 100 colour maps and the normalised
  input, giving ab (Lab units) directly.

Every convolution of the pixel decoder and the refinement is spectrally normalised
(``weight_orig``, ``weight_u``, ``weight_v``: the power-iteration vectors are in
the checkpoints, so eval-mode outputs are exactly the official ones).

The official pipeline feeds the network a square ``input_size`` x
``input_size`` gray RGB image (512 by default) and resizes the ab back.
``forward(l)`` does the same from L, with the same resamplings (bilinear
without antialiasing to the square, nearest neighbour back), so every frame
shape works (the network itself needs multiples of 32) and the result is the
official one within a grey level (tests/test_ddcolor.py). ``fit="pad"`` keeps
the aspect instead, padding to multiples of 32. ``forward_rgb`` is the
official network on its own input.

Working size: 256 for both, not the official 512, because of CPU speed. On
one core of a 2-core CPU (benchmarks/bench_ddcolor.py, float32) a frame takes
about 1.5 s with ConvNeXt-T and 7.5 s with ConvNeXt-L at 256, and 9.2 s and
25 s at 512: 512 would make CPU video colourisation impractical. The paper
trains at 256x256, so 256 input is one the network has seen. With a GPU,
``build(input_size=512)`` gives the official default.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F
from torch.nn.utils import spectral_norm

from .. import color

STRIDE = 32  # the encoder's total downsampling: the network's inputs are multiples of it
ENCODERS = {
    "convnext-t": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "convnext-l": ((3, 3, 27, 3), (192, 384, 768, 1536)),
}


# --------------------------------------------------------------------------
# encoder: ConvNeXt
# --------------------------------------------------------------------------


class LayerNorm2d(nn.LayerNorm):
    """Layer norm over the channels of an (N, C, H, W) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, layer_scale: float = 1e-6):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self, depths, dims, in_chans: int = 3):
        super().__init__()
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(in_chans, dims[0], 4, stride=4), LayerNorm2d(dims[0], eps=1e-6))]
            + [nn.Sequential(LayerNorm2d(dims[i], eps=1e-6), nn.Conv2d(dims[i], dims[i + 1], 2, stride=2))
               for i in range(3)])
        self.stages = nn.ModuleList(nn.Sequential(*(ConvNeXtBlock(d) for _ in range(n)))
                                    for n, d in zip(depths, dims))
        for i, d in enumerate(dims):
            self.add_module(f"norm{i}", LayerNorm2d(d, eps=1e-6))
        # ConvNeXt's classifier norm: in the official files, unused by colorization.
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.norm.requires_grad_(False)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The normalised features of the four stages (strides 4, 8, 16, 32)."""
        feats = []
        for i in range(4):
            x = self.stages[i](self.downsample_layers[i](x))
            feats.append(getattr(self, f"norm{i}")(x))
        return feats


class Encoder(nn.Module):
    def __init__(self, name: str):
        super().__init__()
        self.arch = ConvNeXt(*ENCODERS[name])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.arch(x)


# --------------------------------------------------------------------------
# pixel decoder
# --------------------------------------------------------------------------


def _conv(cin: int, cout: int, ks: int, *, bias: bool, relu: bool = False, bn: bool = False) -> nn.Sequential:
    """Spectral-norm convolution, then optional ReLU and BatchNorm (the official index layout)."""
    conv = nn.Conv2d(cin, cout, ks, padding=(ks - 1) // 2, bias=bias)
    nn.init.kaiming_normal_(conv.weight)
    if bias:
        nn.init.zeros_(conv.bias)
    layers: list[nn.Module] = [spectral_norm(conv)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    return nn.Sequential(*layers)


class PixelShuffleUp(nn.Module):
    """x``scale`` upsampling: 1x1 convolution, ReLU, pixel shuffle, one-pixel blur."""

    def __init__(self, cin: int, cout: int, scale: int = 2, *, bn: bool = True):
        super().__init__()
        self.scale = scale
        self.conv = _conv(cin, cout * scale**2, 1, bias=not bn, bn=bn)
        # ICNR: the scale**2 sub-pixels of an output channel start from one kernel, so a
        # fresh network upsamples like nearest neighbour instead of in a checkerboard.
        with torch.no_grad():
            w = self.conv[0].weight_orig
            base = nn.init.kaiming_normal_(torch.empty(cout, cin, 1, 1))
            w.copy_(base.repeat_interleave(scale**2, dim=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pixel_shuffle(F.relu(self.conv(x)), self.scale)
        # The shift-and-average smooths the seams between shuffled sub-pixels.
        return F.avg_pool2d(F.pad(x, (1, 0, 1, 0), mode="replicate"), 2, stride=1)


class UnetBlock(nn.Module):
    """Upsample x2, join the skip feature (BatchNorm), ReLU, 3x3 conv, ReLU, BatchNorm."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.shuf = PixelShuffleUp(cin, cout)
        self.bn = nn.BatchNorm2d(cskip)
        self.conv = _conv(cout + cskip, cout, 3, bias=False, relu=True, bn=True)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.shuf(x)
        if up.shape[-2:] != skip.shape[-2:]:
            up = F.interpolate(up, size=skip.shape[-2:], mode="nearest")
        return self.conv(F.relu(torch.cat((up, self.bn(skip)), dim=1)))


# --------------------------------------------------------------------------
# colour decoder
# --------------------------------------------------------------------------


def sine_position(x: torch.Tensor, half: int = 128, temperature: float = 10000.0) -> torch.Tensor:
    """(HW, 1, 2*half) sine embedding of the normalised (y, x) of each position of ``x``'s map."""
    h, w = x.shape[-2:]
    dev = x.device
    eps, scale = 1e-6, 2 * math.pi
    y = torch.arange(1, h + 1, dtype=torch.float32, device=dev) / (h + eps) * scale
    xx = torch.arange(1, w + 1, dtype=torch.float32, device=dev) / (w + eps) * scale
    i = torch.arange(half, dtype=torch.float32, device=dev)
    dim_t = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / half)

    def embed(p: torch.Tensor) -> torch.Tensor:
        p = p[:, None] / dim_t
        return torch.stack((p[:, 0::2].sin(), p[:, 1::2].cos()), dim=2).flatten(1)

    ey, ex = embed(y), embed(xx)  # (h, half), (w, half)
    pos = torch.cat((ey[:, None, :].expand(h, w, half), ex[None, :, :].expand(h, w, half)), dim=2)
    return pos.reshape(h * w, 1, 2 * half).to(x.dtype)


class SelfAttentionLayer(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=0.0)
        self.norm = nn.LayerNorm(dim)

    def forward(self, q: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        k = q + query_pos
        return self.norm(q + self.self_attn(k, k, q, need_weights=False)[0])


class CrossAttentionLayer(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(dim, heads, dropout=0.0)
        self.norm = nn.LayerNorm(dim)

    def forward(self, q: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor,
                query_pos: torch.Tensor) -> torch.Tensor:
        out = self.multihead_attn(q + query_pos, memory + pos, memory, need_weights=False)[0]
        return self.norm(q + out)


class FFNLayer(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.linear2(F.relu(self.linear1(x))))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, out: int, n: int):
        super().__init__()
        sizes = [dim] + [hidden] * (n - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:] + [out]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MultiScaleColorDecoder(nn.Module):
    def __init__(self, in_channels, *, dim: int = 256, queries: int = 100, heads: int = 8,
                 ffn: int = 2048, layers: int = 9, scales: int = 3, embed_dim: int = 256):
        super().__init__()
        self.num_layers, self.num_scales = layers, scales
        # Declared in the order of the official state_dict.
        self.query_feat = nn.Embedding(queries, dim)  # the colour queries' content
        self.query_embed = nn.Embedding(queries, dim)  # and their position embedding
        self.level_embed = nn.Embedding(scales, dim)
        self.input_proj = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_channels)
        for proj in self.input_proj:
            nn.init.kaiming_uniform_(proj.weight, a=1)
            nn.init.zeros_(proj.bias)
        self.transformer_self_attention_layers = nn.ModuleList(SelfAttentionLayer(dim, heads) for _ in range(layers))
        self.transformer_cross_attention_layers = nn.ModuleList(CrossAttentionLayer(dim, heads)
                                                                for _ in range(layers))
        self.transformer_ffn_layers = nn.ModuleList(FFNLayer(dim, ffn) for _ in range(layers))
        self.decoder_norm = nn.LayerNorm(dim)
        self.color_embed = MLP(dim, dim, embed_dim, 3)

    def forward(self, feats: list[torch.Tensor], image_embed: torch.Tensor) -> torch.Tensor:
        """(N, queries, H, W) colour maps from the pixel decoder's scales and image embedding."""
        n = image_embed.shape[0]
        memory, pos = [], []
        for i, f in enumerate(feats):
            src = self.input_proj[i](f).flatten(2) + self.level_embed.weight[i][None, :, None]
            memory.append(src.permute(2, 0, 1))  # (HW, N, C): sequence first, as MultiheadAttention
            pos.append(sine_position(f).expand(-1, n, -1))
        query_pos = self.query_embed.weight[:, None, :].expand(-1, n, -1)
        q = self.query_feat.weight[:, None, :].expand(-1, n, -1)
        for i in range(self.num_layers):
            s = i % self.num_scales
            q = self.transformer_cross_attention_layers[i](q, memory[s], pos[s], query_pos)
            q = self.transformer_self_attention_layers[i](q, query_pos)
            q = self.transformer_ffn_layers[i](q)
        embed = self.color_embed(self.decoder_norm(q).transpose(0, 1))  # (N, queries, C)
        return torch.einsum("nqc,nchw->nqhw", embed, image_embed)


class Decoder(nn.Module):
    def __init__(self, dims, *, nf: int = 512, queries: int = 100, scales: int = 3, layers: int = 9):
        super().__init__()
        skips = dims[-2::-1]  # strides 16, 8, 4
        outs = [nf] * (len(skips) - 1) + [nf // 2]
        ins = [dims[-1]] + outs[:-1]
        self.layers = nn.ModuleList(UnetBlock(i, s, o) for i, s, o in zip(ins, skips, outs))
        self.last_shuf = PixelShuffleUp(nf // 2, nf // 2, scale=4, bn=False)
        self.color_decoder = MultiScaleColorDecoder(outs, queries=queries, scales=scales, layers=layers)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x, outs = feats[-1], []
        for block, skip in zip(self.layers, feats[-2::-1]):
            x = block(x, skip)
            outs.append(x)
        return self.color_decoder(outs, self.last_shuf(x))


# --------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------


class DDColor(nn.Module):
    def __init__(self, encoder: str = "convnext-t", input_size: int = 256, fit: str = "square",
                 queries: int = 100, scales: int = 3, layers: int = 9, nf: int = 512, out_channels: int = 2):
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, not {encoder!r}")
        if fit not in ("square", "pad"):
            raise ValueError(f"fit must be 'square' or 'pad', not {fit!r}")
        if fit == "square" and (input_size < STRIDE or input_size % STRIDE):
            raise ValueError(f"input_size must be a positive multiple of {STRIDE}, not {input_size}")
        self.input_size, self.fit = input_size, fit
        self.encoder = Encoder(encoder)
        self.decoder = Decoder(ENCODERS[encoder][1], nf=nf, queries=queries, scales=scales, layers=layers)
        self.refine_net = nn.Sequential(_conv(queries + 3, out_channels, 1, bias=True))
        # ImageNet statistics; official files carry their own copy, which wins.
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward_rgb(self, rgb: torch.Tensor) -> torch.Tensor:
        """The official network: gray RGB (N, 3, H, W) in 0..1, H and W multiples of 32, to ab (N, 2, H, W)."""
        if rgb.shape[-2] % STRIDE or rgb.shape[-1] % STRIDE:
            raise ValueError(f"forward_rgb needs sides that are multiples of {STRIDE}, not {tuple(rgb.shape[-2:])}")
        x = (rgb - self.mean) / self.std
        maps = self.decoder(self.encoder(x))
        return self.refine_net(torch.cat((maps, x), dim=1))

    def forward(self, l: torch.Tensor) -> torch.Tensor:
        """ab (N, 2, h, w) for L (N, 1, h, w) in 0..100, any h and w."""
        h, w = l.shape[-2:]
        if self.fit == "square":
            # The official pipeline's resamplings: OpenCV's default resize (bilinear, no
            # antialiasing) to the square, nearest neighbour for the ab back.
            size = (self.input_size, self.input_size)
            x = l if (h, w) == size else F.interpolate(l, size=size, mode="bilinear", align_corners=False)
            ab = self.forward_rgb(color.l_to_gray(x).expand(-1, 3, -1, -1))
            return ab if (h, w) == size else F.interpolate(ab, size=(h, w), mode="nearest")
        ph, pw = -h % STRIDE, -w % STRIDE
        gray = color.l_to_gray(F.pad(l, (0, pw, 0, ph), mode="replicate") if ph or pw else l)
        return self.forward_rgb(gray.expand(-1, 3, -1, -1))[..., :h, :w]

    def decode(self, ab: torch.Tensor) -> torch.Tensor:
        """The output is ab already."""
        return ab.float()

    def loss(self, ab_pred: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """The paper's pixel loss: L1 in ab units.

        Its perceptual (pretrained VGG), adversarial and colourfulness terms
        need parts that are not in the network (or L), so they are not here.
        """
        return F.l1_loss(ab_pred.float(), ab.float().to(ab_pred.device))


def ddcolor_tiny(**kw) -> DDColor:
    return DDColor("convnext-t", **kw)


def ddcolor_large(**kw) -> DDColor:
    return DDColor("convnext-l", **kw)
