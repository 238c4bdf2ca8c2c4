"""Audio → head pose: a conditional normalizing flow over the per-frame pose coefficients.

EDTalk's authors say their (unreleased) audio→pose model "is based on MoGlow" (paper.md §1.5b): an
autoregressive conditional Glow, where each frame's pose x_t is an invertible function of a Gaussian
z_t given a context built from the audio and the previous poses. We follow that shape:

    h_t  = GRU([audio_t, x_{t-k}, …, x_{t-1}])          (recurrent conditioning, MoGlow's LSTM)
    u_t  = x_t - x_{t-1}  (residual=True, default; u_t = x_t otherwise)
    u_t  = f^{-1}(z_t; h_t),   f = K × (ActNorm → invertible 1×1 (LU) → affine coupling(h_t))
    log p(x_{1:T} | a) = Σ_t [ log N(f(u_t; h_t)) + log |det ∂f/∂u_t| ]   (∂u_t/∂x_t = I)

The likelihood is exact (no bound): every layer has a closed-form inverse and log-determinant, and
the conditioning only looks at x_{<t}, so the chain-rule factorisation holds. Sampling runs the GRU
one frame at a time and feeds the sampled pose back; `temperature` scales z and a `torch.Generator`
seed makes it repeatable. Poses are standardised with buffers fitted to the training set, and the
Jacobian of that affine map is included, so `log_prob` is a density in the caller's units.

Flow depth, hidden sizes and the conditioning window are not published; the defaults here are ours.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from metrics.errors import InputError

__all__ = ["PoseFlowConfig", "PoseFlow", "ActNorm", "InvertibleLinear", "AffineCoupling", "mel_window_stats"]

_LOG_2PI = math.log(2.0 * math.pi)


def mel_window_stats(mel_windows: torch.Tensor) -> torch.Tensor:
    """Per-frame audio features for the flow from Wav2Lip mel windows (…, T, 80, 16) → (…, T, 160).

    Mean and standard deviation over the 16 mel steps of each window: the mean carries loudness and
    spectral shape (speech rhythm), the std how fast it changes inside the frame. Cheap, and needs no
    pretrained audio encoder, so the flow can be trained on any data set.
    """
    if mel_windows.dim() < 3 or mel_windows.shape[-2] != 80:
        raise InputError(
            f"mel_windows: expected (..., T, 80, W) Wav2Lip mel windows, got {tuple(mel_windows.shape)}"
        )
    return torch.cat([mel_windows.mean(-1), mel_windows.std(-1, unbiased=False)], dim=-1)


@dataclass
class PoseFlowConfig:
    n_pose: int = 6  # PLN pose coefficients per frame (3 when trained on yaw/pitch/roll directly)
    audio_dim: int = 160  # per-frame audio feature size (mel_window_stats → 160)
    history: int = 4  # k previous poses seen by the conditioner (MoGlow uses a short window too)
    hidden: int = 128  # GRU state and coupling-net width
    n_steps: int = 8  # flow steps (ActNorm + 1×1 + coupling)
    dropout: float = 0.1  # on the audio features: forces use of the pose history too
    # Model the step u_t = x_t - x_{t-1} instead of x_t (Jacobian 1 given x_{t-1}, so still exact).
    # Head motion is smooth, so the step is the natural quantity; the flow then only learns its law.
    residual: bool = True


class ActNorm(nn.Module):
    """Per-dimension affine map y = (x + b)·exp(s); initialised from the first batch (Glow)."""

    def __init__(self, dim: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _init(self, x: torch.Tensor) -> None:
        self.bias.copy_(-x.mean(0))
        self.log_scale.copy_(-torch.log(x.std(0, unbiased=False) + 1e-6))
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None):
        if self.training and not bool(self.initialized) and x.shape[0] > 1:
            self._init(x)
        y = (x + self.bias) * torch.exp(self.log_scale)
        return y, self.log_scale.sum().expand(x.shape[0])

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.bias


class InvertibleLinear(nn.Module):
    """Glow's invertible 1×1 convolution on a vector: W = P·L·(U + diag(sign·exp(log_s))).

    The LU form makes log|det W| = Σ log_s exact and O(d), and keeps W invertible by construction.
    """

    def __init__(self, dim: int, generator: torch.Generator | None = None):
        super().__init__()
        w = torch.linalg.qr(torch.randn(dim, dim, generator=generator))[0]
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("l_mask", torch.tril(torch.ones(dim, dim), -1))
        self.register_buffer("eye", torch.eye(dim))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(torch.abs(s)))

    def weight(self) -> torch.Tensor:
        lower = self.lower * self.l_mask + self.eye
        upper = self.upper * self.l_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None):
        return x @ self.weight().T, self.log_s.sum().expand(x.shape[0])

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return torch.linalg.solve(self.weight(), y.T).T


class AffineCoupling(nn.Module):
    """y_a = x_a;  y_b = (x_b + t(x_a, h))·σ(s(x_a, h) + 2), Glow's stable sigmoid scale.

    The last layer starts at zero so every step begins as the identity (scale σ(2)≈0.88 is undone by
    ActNorm), which is what makes deep flows trainable from the first iteration.
    """

    def __init__(self, dim: int, cond_dim: int, hidden: int):
        super().__init__()
        if dim < 2:
            raise ValueError("an affine coupling needs at least 2 dimensions")
        self.n_a = dim // 2
        self.n_b = dim - self.n_a
        self.net = nn.Sequential(
            nn.Linear(self.n_a + cond_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 2 * self.n_b),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _params(self, xa: torch.Tensor, cond: torch.Tensor):
        out = self.net(torch.cat([xa, cond], dim=-1))
        shift, raw = out[:, : self.n_b], out[:, self.n_b :]
        return shift, torch.sigmoid(raw + 2.0)

    def forward(self, x: torch.Tensor, cond: torch.Tensor):
        xa, xb = x[:, : self.n_a], x[:, self.n_a :]
        shift, scale = self._params(xa, cond)
        return torch.cat([xa, (xb + shift) * scale], dim=-1), torch.log(scale).sum(-1)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        ya, yb = y[:, : self.n_a], y[:, self.n_a :]
        shift, scale = self._params(ya, cond)
        return torch.cat([ya, yb / scale - shift], dim=-1)


class PoseFlow(nn.Module):
    """Autoregressive conditional flow p(pose_{1:T} | audio_{1:T}); see the module docstring."""

    def __init__(self, cfg: PoseFlowConfig | None = None, **overrides):
        super().__init__()
        cfg = cfg or PoseFlowConfig()
        if overrides:
            cfg = PoseFlowConfig(**{**asdict(cfg), **overrides})
        if cfg.n_pose < 2:
            raise ValueError("PoseFlow needs n_pose >= 2 (coupling layers split the pose vector)")
        self.cfg = cfg
        d, h = cfg.n_pose, cfg.hidden
        self.audio_proj = nn.Sequential(nn.Linear(cfg.audio_dim, h), nn.ReLU(), nn.Dropout(cfg.dropout))
        self.rnn = nn.GRU(h + cfg.history * d, h, batch_first=True)
        gen = torch.Generator().manual_seed(0)  # fixed 1×1 init so two builds of one config agree
        self.steps = nn.ModuleList()
        for _ in range(cfg.n_steps):
            self.steps.append(ActNorm(d))
            self.steps.append(InvertibleLinear(d, generator=gen))
            self.steps.append(AffineCoupling(d, h, h))
        # Data standardisation (fitted once on the training poses / audio; saved with the weights).
        self.register_buffer("pose_mean", torch.zeros(d))
        self.register_buffer("pose_std", torch.ones(d))
        self.register_buffer("audio_mean", torch.zeros(cfg.audio_dim))
        self.register_buffer("audio_std", torch.ones(cfg.audio_dim))
        self.register_buffer("step_std", torch.ones(d))  # std of normalised frame-to-frame steps

    # -- data normalisation ------------------------------------------------------------------------
    @torch.no_grad()
    def fit_normalizer(self, poses, audio) -> None:
        """Set pose/audio/step standardisation from training sequences: tensors (B,T,d)/(B,T,A) or
        lists of (T,d)/(T,A) clips (steps are only taken inside a clip)."""
        poses = [poses] if torch.is_tensor(poses) and poses.dim() == 2 else list(poses)
        audio = [audio] if torch.is_tensor(audio) and audio.dim() == 2 else list(audio)
        p = torch.cat([x.reshape(-1, self.cfg.n_pose) for x in poses]).float()
        a = torch.cat([x.reshape(-1, self.cfg.audio_dim) for x in audio]).float()
        self.pose_mean.copy_(p.mean(0))
        self.pose_std.copy_(p.std(0, unbiased=False).clamp_min(1e-4))
        self.audio_mean.copy_(a.mean(0))
        self.audio_std.copy_(a.std(0, unbiased=False).clamp_min(1e-4))
        steps = [((x[1:] - x[:-1]).float() / self.pose_std) for x in poses if len(x) > 1]
        if steps:
            self.step_std.copy_(torch.cat(steps).std(0, unbiased=False).clamp_min(1e-4))

    def _check(self, poses: torch.Tensor | None, audio: torch.Tensor) -> None:
        if audio.dim() != 3 or audio.shape[-1] != self.cfg.audio_dim:
            raise InputError(
                f"audio: expected (B, T, {self.cfg.audio_dim}) per-frame features, got {tuple(audio.shape)}"
            )
        if poses is not None and (
            poses.dim() != 3 or poses.shape[-1] != self.cfg.n_pose or poses.shape[:2] != audio.shape[:2]
        ):
            raise InputError(
                f"poses: expected (B, T, {self.cfg.n_pose}) matching audio {tuple(audio.shape[:2])}, "
                f"got {tuple(poses.shape)}"
            )

    # -- conditioning ---------------------------------------------------------------------------------
    def _history(self, xn: torch.Tensor, init: torch.Tensor | None) -> torch.Tensor:
        """(B,T,k·d): the k previous normalised poses at every t (teacher forcing)."""
        b, t, d = xn.shape
        k = self.cfg.history
        past = init if init is not None else xn.new_zeros(b, k, d)
        padded = torch.cat([past, xn[:, :-1] if t > 1 else xn[:, :0]], dim=1)  # (B, k+T-1, d)
        wins = padded.unfold(1, k, 1)  # (B, T, d, k), oldest first
        return wins.permute(0, 1, 3, 2).reshape(b, t, k * d)

    def _prime(self, init: torch.Tensor | None, b: int, device, dtype) -> torch.Tensor | None:
        """Normalised k-frame history from the caller's poses (B,k',d), left-padded by repetition."""
        if init is None:
            return None
        init = (init.to(device, dtype) - self.pose_mean) / self.pose_std
        if init.dim() == 2:
            init = init.unsqueeze(1)
        k = self.cfg.history
        if init.shape[1] < k:
            init = torch.cat([init[:, :1].expand(-1, k - init.shape[1], -1), init], dim=1)
        return init[:, -k:].expand(b, -1, -1)

    # -- density ----------------------------------------------------------------------------------
    def _flow_forward(self, x: torch.Tensor, cond: torch.Tensor):
        logdet = x.new_zeros(x.shape[0])
        for step in self.steps:
            x, ld = step(x, cond)
            logdet = logdet + ld
        return x, logdet

    def _flow_inverse(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        for step in reversed(self.steps):
            z = step.inverse(z, cond)
        return z

    def encode(self, poses: torch.Tensor, audio: torch.Tensor, init: torch.Tensor | None = None):
        """Poses (B,T,d) → (z (B,T,d), per-frame log p(x_t | x_<t, a) (B,T)) in the caller's units."""
        self._check(poses, audio)
        b, t, d = poses.shape
        xn = (poses - self.pose_mean) / self.pose_std
        an = (audio - self.audio_mean) / self.audio_std
        primed = self._prime(init, b, poses.device, poses.dtype)
        hist = self._history(xn, primed)
        h, _ = self.rnn(torch.cat([self.audio_proj(an), hist], dim=-1))
        target = xn
        log_scale = torch.log(self.pose_std).sum()
        if self.cfg.residual:
            # previous frame (the primed pose, or the mean pose, before frame 0); dividing by the step
            # std is one more fixed affine map, so its log-det joins the standardisation term
            prev = torch.cat([primed[:, -1:] if primed is not None else xn.new_zeros(b, 1, d), xn[:, :-1]], 1)
            target = (xn - prev) / self.step_std
            log_scale = log_scale + torch.log(self.step_std).sum()
        z, logdet = self._flow_forward(target.reshape(b * t, d), h.reshape(b * t, -1))
        log_pz = -0.5 * (z.pow(2).sum(-1) + d * _LOG_2PI)
        # Standardisation is part of the density: log|det ∂u/∂x| = -Σ log std (- Σ log step_std).
        logp = log_pz + logdet - log_scale
        return z.reshape(b, t, d), logp.reshape(b, t)

    def log_prob(
        self, poses: torch.Tensor, audio: torch.Tensor, init: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Exact per-frame conditional log-density (B,T), nats."""
        return self.encode(poses, audio, init)[1]

    def nll(self, poses: torch.Tensor, audio: torch.Tensor, init: torch.Tensor | None = None) -> torch.Tensor:
        """Mean negative log-likelihood per frame (the training loss and the reported metric)."""
        return -self.log_prob(poses, audio, init).mean()

    # -- sampling -----------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        audio: torch.Tensor,
        temperature: float = 1.0,
        seed: int | None = None,
        init: torch.Tensor | None = None,
        z: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Draw poses (B,T,d) for audio features (B,T,A).

        `init` (B,d) or (B,k,d) primes the pose history (e.g. the source image's pose), so motion
        starts where the source head is. `z` replaces the Gaussian draw (for exactness tests).
        """
        self._check(None, audio)
        b, t, _ = audio.shape
        d, k = self.cfg.n_pose, self.cfg.history
        dev, dt = audio.device, audio.dtype
        if z is None:
            gen = torch.Generator(device="cpu")
            gen.manual_seed(int(seed) if seed is not None else int(torch.seed() % (2**63)))
            z = torch.randn(b, t, d, generator=gen).to(dev, dt) * float(temperature)
        an = (audio - self.audio_mean) / self.audio_std
        feats = self.audio_proj(an)
        past = self._prime(init, b, dev, dt)
        past = past.clone() if past is not None else audio.new_zeros(b, k, d)
        state = None
        out = []
        for i in range(t):
            inp = torch.cat([feats[:, i], past.reshape(b, k * d)], dim=-1).unsqueeze(1)
            h, state = self.rnn(inp, state)
            x = self._flow_inverse(z[:, i], h[:, 0])
            if self.cfg.residual:
                x = past[:, -1] + x * self.step_std  # past[:, -1] is 0 (the mean) before frame 0
            out.append(x)
            past = torch.cat([past[:, 1:], x.unsqueeze(1)], dim=1)
        xn = torch.stack(out, dim=1)
        return xn * self.pose_std + self.pose_mean
