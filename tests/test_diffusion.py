import math

import pytest
import torch

from imagenet_t2i.diffusion.objective import AugmentSource, Batch, diffusion_loss, drop_captions, mix_batches
from imagenet_t2i.diffusion.sampler import ddim_sample
from imagenet_t2i.diffusion.schedule import add_noise, cosine_gamma, linear_gamma
from imagenet_t2i.models import SIZES, build_model


def test_schedules():
    t = torch.tensor([0.0, 0.5, 1.0])
    assert torch.allclose(linear_gamma(t), torch.tensor([1.0, 0.5, 1e-9]))
    g = cosine_gamma(torch.linspace(0, 1, 11))
    assert g[0] > 0.9999 and g[-1] < 1e-6
    assert torch.all(g[1:] < g[:-1])
    x0, eps = torch.ones(10000, 1, 1, 1), torch.randn(10000, 1, 1, 1)
    xt = add_noise(x0, eps, torch.full((10000,), 0.25))
    assert abs(xt.mean().item() - 0.5) < 0.03 and abs(xt.var().item() - 0.75) < 0.05


def _batch(n: int, value: float, length: int) -> Batch:
    return Batch(torch.full((n, 3, 4, 4), value), torch.full((n, length, 8), value), torch.ones(n, length, dtype=torch.bool))


def test_cutmix_timestep_rule_swaps_latent_and_caption_together():
    n = 20000
    g = torch.Generator().manual_seed(0)
    t = torch.rand(n, generator=g)
    mixed, chosen = mix_batches(_batch(n, 0.0, 3), t, [AugmentSource(_batch(n, 1.0, 5), 0.4, 0.5)], g)
    swapped = chosen == 1
    assert abs(swapped.float().mean().item() - 0.3) < 0.02  # P(t > 0.4) * 0.5
    assert torch.all(t[swapped] > 0.4)
    assert torch.all(mixed.x0[swapped] == 1) and torch.all(mixed.x0[~swapped] == 0)
    assert torch.all(mixed.text[swapped] == 1) and torch.all(mixed.mask[swapped].sum(1) == 5)
    assert torch.all(mixed.mask[~swapped].sum(1) == 3) and torch.all(mixed.text[~swapped][:, 3:] == 0)


def test_second_source_never_reswaps():
    n = 20000
    g = torch.Generator().manual_seed(1)
    t = torch.rand(n, generator=g)
    _, chosen = mix_batches(_batch(n, 0.0, 3), t, [AugmentSource(_batch(n, 1.0, 3), 0.4, 0.5),
                                                   AugmentSource(_batch(n, 2.0, 3), 0.0, 0.3)], g)
    frac_crop = (chosen == 2).float().mean().item()
    assert abs(frac_crop - 0.7 * 0.3) < 0.02  # only the 70% not taken by CutMix can become crops


def test_caption_dropout_uses_unconditional_embedding():
    n = 20000
    g = torch.Generator().manual_seed(2)
    uncond = torch.full((2, 8), 7.0)
    out, dropped = drop_captions(_batch(n, 1.0, 4), uncond, 0.1, g)
    assert torch.equal(dropped, out.text[:, 0, 0] == 7)
    assert abs(dropped.float().mean().item() - 0.1) < 0.01
    assert torch.all(out.mask[dropped] == torch.tensor([True, True, False, False]))
    assert torch.all(out.text[dropped][:, 2:] == 0)


class Oracle(torch.nn.Module):
    """Knows the data is a single point c: returns the exact noise of x_t."""

    def __init__(self, c: torch.Tensor, scale: float = 1.0):
        super().__init__()
        self.c, self.scale, self.calls = c, scale, []

    def forward(self, x, gamma, text, mask, prev_latents=None):
        self.calls.append(prev_latents)
        g = gamma.view(-1, 1, 1, 1)
        eps = (x - g.sqrt() * self.c) / (1 - g).clamp(min=1e-12).sqrt()
        return eps * self.scale, torch.ones(x.shape[0], 2, 3)


def test_loss_is_zero_for_the_oracle_and_one_for_zero_prediction():
    c = torch.full((1, 3, 4, 4), 0.3)
    base = Batch(c.expand(64, -1, -1, -1).clone(), torch.zeros(64, 2, 8), torch.ones(64, 2, dtype=torch.bool))
    g = torch.Generator().manual_seed(3)
    loss, _ = diffusion_loss(Oracle(c), base, [], torch.zeros(1, 8), g)
    assert loss.item() < 1e-3
    loss0, _ = diffusion_loss(Oracle(c, scale=0.0), base, [], torch.zeros(1, 8), g)
    assert abs(loss0.item() - 1.0) < 0.1


class SelfCondRecorder(Oracle):
    """The Oracle, recording the ``self_condition`` each call gets (None when not given)."""

    def __init__(self, c: torch.Tensor):
        super().__init__(c)
        self.fed = []

    def forward(self, x, gamma, text, mask, prev_latents=None, self_condition=None):
        self.fed.append(self_condition)
        return super().forward(x, gamma, text, mask, prev_latents)[0], None


def test_self_conditioning_is_decided_per_sample():
    n = 4000
    c = torch.zeros(1, 3, 4, 4)
    base = Batch(c.expand(n, -1, -1, -1).clone(), torch.zeros(n, 2, 8), torch.ones(n, 2, dtype=torch.bool))
    states = []
    for rate in (0.3, 0.9, 1.0):
        model, g = SelfCondRecorder(c), torch.Generator().manual_seed(0)
        diffusion_loss(model, base, [], torch.zeros(1, 8), g, self_cond_rate=rate)
        (fed,) = model.fed  # one call: the model runs both passes
        assert fed.shape == (n,) and set(fed.unique().tolist()) <= {0.0, 1.0}
        assert abs(fed.mean().item() - rate) < 0.03
        states.append(g.get_state())
    assert torch.equal(states[0], states[1]) and torch.equal(states[1], states[2])  # draws independent of outcomes
    model = SelfCondRecorder(c)
    diffusion_loss(model, base, [], torch.zeros(1, 8), torch.Generator().manual_seed(0), self_cond_rate=0.0)
    assert model.fed == [None]


def _tiny_cad_i(coherence: bool) -> torch.nn.Module:
    """Tiny CAD-I with every parameter perturbed (the zero-init self-conditioning LayerNorm would hide it)."""
    torch.manual_seed(0)
    model = build_model("cad_i", **SIZES["cad_i"]["tiny"], coherence=coherence)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _capture(model: torch.nn.Module) -> list[tuple[tuple, dict, tuple]]:
    """Record (args, kwargs, output) of every forward call of the real model."""
    calls = []
    model.register_forward_hook(lambda m, args, kwargs, out: calls.append((args, kwargs, out)), with_kwargs=True)
    return calls


def _cad_batch(n: int) -> tuple[Batch, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    base = Batch(torch.randn(n, 3, 32, 32, generator=gen), torch.randn(n, 4, 384, generator=gen),
                 torch.ones(n, 4, dtype=torch.bool))
    return base, torch.randn(1, 384, generator=gen)


@torch.no_grad()
def test_cad_i_coherence_follows_caption_dropout():
    base, uncond = _cad_batch(3)
    model = _tiny_cad_i(coherence=True)
    for cfg_dropout, value in ((1.0, 0.0), (0.0, 1.0)):
        calls = _capture(model)
        diffusion_loss(model, base, [], uncond, torch.Generator().manual_seed(0), cfg_dropout, self_cond_rate=1.0)
        (_, kwargs, _), = calls  # one call: the self-conditioning pass shares its text context and coherence
        torch.testing.assert_close(kwargs["coherence"], torch.full((3,), value))
        torch.testing.assert_close(kwargs["self_condition"], torch.ones(3))
    for model, rate in ((_tiny_cad_i(coherence=False), 0.9), (build_model("dit_i", **SIZES["dit_i"]["tiny"]), 0.0)):
        calls = _capture(model)
        diffusion_loss(model, base, [], uncond, torch.Generator().manual_seed(0), 0.5, self_cond_rate=rate)
        assert all("coherence" not in kwargs for _, kwargs, _ in calls)


def test_cad_i_self_conditioning_in_one_call_equals_the_two_passes():
    """``self_condition`` runs RIN's two passes in one forward (shared patch embedding and text context): the same
    outputs and gradients as a no-grad first pass whose latents are fed back by hand."""
    base, _ = _cad_batch(8)
    model = _tiny_cad_i(coherence=True)
    args = (base.x0, torch.linspace(0.05, 0.95, 8), base.text, base.mask)
    coherence, feed = torch.tensor([1.0, 0, 1, 1, 0, 1, 1, 1]), torch.tensor([1.0, 0, 1, 1, 0, 0, 1, 0])
    eps, latents = model(*args, coherence=coherence, self_condition=feed)
    grads = torch.autograd.grad(eps.square().mean(), list(model.parameters()), allow_unused=True)
    with torch.no_grad():
        _, first = model(*args, coherence=coherence)
    eps2, latents2 = model(*args, coherence=coherence, prev_latents=first * feed.view(-1, 1, 1))
    grads2 = torch.autograd.grad(eps2.square().mean(), list(model.parameters()), allow_unused=True)
    torch.testing.assert_close((eps, latents), (eps2, latents2), rtol=0, atol=0)
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(grads, grads2))
    with torch.no_grad():
        eps_none, _ = model(*args, coherence=coherence)  # no self-conditioning: what unfed samples get
    fed = feed.bool()
    torch.testing.assert_close(eps[~fed], eps_none[~fed], rtol=0, atol=0)
    assert (eps[fed] - eps_none[fed]).abs().amax() > 1e-4
    with pytest.raises(ValueError, match="not both"):
        model(*args, prev_latents=first, self_condition=feed)


@torch.no_grad()
def test_guidance_contrasts_coherence_one_with_zero():
    from imagenet_t2i.diffusion.sampler import guided_eps, guided_inputs

    model = _tiny_cad_i(coherence=True).eval()
    calls = _capture(model)
    text, mask = torch.randn(2, 4, 384), torch.ones(2, 4, dtype=torch.bool)
    ddim_sample(model, text, mask, torch.zeros(1, 384), (3, 32, 32), steps=2,
                generator=torch.Generator().manual_seed(0))
    assert len(calls) == 2
    for _, kwargs, _ in calls:
        assert torch.equal(kwargs["coherence"], torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert calls[0][1]["context"] is calls[1][1]["context"]  # the text context: computed once, not per step
    x, gamma = torch.randn(2, 3, 32, 32), torch.full((2,), 0.5)
    eps, _ = guided_eps(model, x, gamma, guided_inputs(model, text, mask, torch.zeros(1, 384)), 3.0, None)
    u_text = torch.zeros(2, 4, 384)
    u_mask = torch.tensor([True, False, False, False]).expand(2, 4)
    eps_c, _ = model(x, gamma, text, mask, coherence=torch.ones(2))
    eps_u, _ = model(x, gamma, u_text, u_mask, coherence=torch.zeros(2))
    torch.testing.assert_close(eps, eps_u + 3.0 * (eps_c - eps_u), atol=1e-5, rtol=1e-5)


def test_ddim_recovers_the_data_point_and_clamps():
    c = torch.full((1, 3, 4, 4), 0.5)
    text, mask = torch.zeros(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)
    out = ddim_sample(Oracle(c), text, mask, torch.zeros(1, 8), (3, 4, 4), steps=10, guidance=3.0,
                      generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, c.expand(2, -1, -1, -1), atol=1e-4)
    far = torch.full((1, 3, 4, 4), 3.0)
    clamped = ddim_sample(Oracle(far), text, mask, torch.zeros(1, 8), (3, 4, 4), steps=10, clamp=1.0)
    assert clamped.max() <= 1.0 + 1e-6


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_ddpm_1000_recovers_the_data_point_with_fresh_noise_each_step(schedule):
    """The official test sampler: ancestral steps add noise, yet with the exact eps the posterior lands on x0."""
    from imagenet_t2i.diffusion.sampler import ddpm_sample

    c = torch.full((1, 3, 4, 4), 0.5)
    text, mask = torch.zeros(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)
    generators = [torch.Generator().manual_seed(s) for s in (1, 2)]
    out = ddpm_sample(Oracle(c), text, mask, torch.zeros(1, 8), (3, 4, 4), steps=1000, guidance=3.0,
                      schedule=schedule, noise=torch.randn(2, 3, 4, 4), step_generators=generators)
    assert torch.allclose(out, c.expand(2, -1, -1, -1), atol=1e-4)
    drawn = generators[0].initial_seed(), torch.randn(1, generator=generators[0])
    fresh = torch.Generator().manual_seed(1)
    torch.randn((999, 3, 4, 4), generator=fresh)  # the 999 steps before the last drew their noise
    assert drawn[0] == 1 and torch.equal(drawn[1], torch.randn(1, generator=fresh))


def test_unguided_first_step_uses_the_conditional_prediction_only(monkeypatch):
    """The released pipeline's step 0: eps = eps_c (guidance 1), then eps_u + s (eps_c - eps_u)."""
    from imagenet_t2i.diffusion.sampler import guided_eps, guided_inputs

    text, mask = torch.zeros(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)
    inputs = guided_inputs(MaskModel(), text, mask, torch.zeros(1, 8))
    x, g = torch.zeros(2, 3, 4, 4), torch.full((2,), 0.5)
    unguided, _ = guided_eps(MaskModel(), x, g, inputs, 1.0, None)
    assert unguided[0, 0, 0, 0].item() == 3  # the conditional prediction alone
    seen = []

    def spy(model, x, gamma, inputs, guidance, prev):  # noqa: ANN001, ANN202
        seen.append(guidance)
        return torch.zeros_like(x), None

    monkeypatch.setattr("imagenet_t2i.diffusion.sampler.guided_eps", spy)
    ddim_sample(MaskModel(), text, mask, torch.zeros(1, 8), (3, 4, 4), steps=4, guidance=16.0, schedule="linear",
                unguided_steps=1, generator=torch.Generator().manual_seed(0))
    assert seen == [1.0, 16.0, 16.0, 16.0]


class MaskModel(torch.nn.Module):
    """eps = number of real text tokens: tells conditional (3 tokens) from unconditional (1) passes."""

    def forward(self, x, gamma, text, mask, prev_latents=None):
        return mask.sum(1).float().view(-1, 1, 1, 1).expand_as(x).clone(), None


def test_guidance_is_the_standard_scale():
    from imagenet_t2i.diffusion.sampler import guided_eps, guided_inputs

    x = torch.zeros(2, 3, 4, 4)
    inputs = guided_inputs(MaskModel(), torch.zeros(2, 3, 8), torch.ones(2, 3, dtype=torch.bool), torch.zeros(1, 8))
    eps, _ = guided_eps(MaskModel(), x, torch.full((2,), 0.5), inputs, guidance=5.0, prev_latents=None)
    assert math.isclose(eps[0, 0, 0, 0].item(), 1 + 5.0 * (3 - 1))  # eps_u + s (eps_c - eps_u)


class FlowOracle(torch.nn.Module):
    """Exact rectified-flow velocity toward the single data point c (t recovered from gamma)."""

    def __init__(self, c: torch.Tensor):
        super().__init__()
        self.c = c

    def forward(self, x, gamma, text, mask, prev_latents=None):
        r = (gamma / (1 - gamma).clamp(min=1e-12)).sqrt().view(-1, 1, 1, 1)  # (1 - t) / t
        t = 1 / (1 + r)
        return (x - self.c) / t, None


def test_flow_extension_loss_and_sampler():
    from imagenet_t2i.diffusion.sampler import flow_sample

    c = torch.full((1, 3, 4, 4), -0.4)
    base = Batch(c.expand(64, -1, -1, -1).clone(), torch.zeros(64, 2, 8), torch.ones(64, 2, dtype=torch.bool))
    loss, _ = diffusion_loss(FlowOracle(c), base, [], torch.zeros(1, 8), torch.Generator().manual_seed(0),
                             objective="flow")
    assert loss.item() < 1e-3
    out = flow_sample(FlowOracle(c), torch.zeros(2, 3, 8), torch.ones(2, 3, dtype=torch.bool), torch.zeros(1, 8),
                      (3, 4, 4), steps=7, guidance=4.0, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, c.expand(2, -1, -1, -1), atol=1e-4)


def test_flow_model_sampled_by_ancestral_ddpm_on_its_own_path():
    from imagenet_t2i.diffusion.sampler import SAMPLERS

    c = torch.full((1, 3, 4, 4), 0.3)
    text, mask = torch.zeros(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    out = SAMPLERS[("flow", "ddpm")](FlowOracle(c), text, mask, torch.zeros(1, 8), (3, 4, 4), steps=6, guidance=3.0,
                                     generator=torch.Generator().manual_seed(0), step_generators=gens)
    assert torch.allclose(out, c.expand(2, -1, -1, -1), atol=1e-4)  # the exact velocity's x0 at every gamma
