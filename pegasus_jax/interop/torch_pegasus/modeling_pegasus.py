"""The whole Pegasus model in PyTorch: an exported checkpoint runs here without JAX.

Imports only torch and transformers (it is copied into each export's `full/` folder and loaded with
`AutoModel.from_pretrained(folder, trust_remote_code=True)`). The pretrained parts are transformers'
own modules: CLIPVisionModel / SiglipVisionModel per frame, WhisperEncoder's layers for audio and
the decoder's own *ForCausalLM (Llama, Qwen2 or Mistral). Our parts are re-implemented to compute what
pegasus_jax/models/{video_encoder,alignment,pegasus}.py compute: the temporal layers and their
interpolated position table, PLLaVA adaptive pooling, the (LayerNorm +) MLP projectors, audio pooling,
the segment time markers, and the decoder sequence
    per segment: [marker] [T'h'w' visual] [audio tokens] [transcript]   then the text,
with invalid tokens masked out of attention and skipped by the RoPE positions.
`forward` takes the batch arrays of data_pipelines/contract.py as torch tensors.
"""
import math

import numpy as np
import torch
from torch import nn
from transformers import (AutoConfig, AutoModelForCausalLM, CLIPVisionConfig, CLIPVisionModel, PreTrainedModel,
                          SiglipVisionConfig, SiglipVisionModel, WhisperConfig, WhisperFeatureExtractor)
from transformers.activations import ACT2FN
from transformers.modeling_outputs import CausalLMOutput
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from .configuration_pegasus import PegasusConfig

VISION_TOWERS = {"clip_vision_model": (CLIPVisionConfig, CLIPVisionModel),
                 "siglip_vision_model": (SiglipVisionConfig, SiglipVisionModel)}


def pool_shape(config, num_segments):
    """(T', h', w') within the visual-token budget: space shrinks first, then time."""
    audio = config.audio_tokens if config.audio else 0
    t, h, w = config.pool

    def fits(t_, h_, w_):
        return num_segments * (1 + t_ * h_ * w_ + audio + config.transcript_tokens) <= config.visual_token_budget

    while not fits(t, h, w) and (h > 1 or w > 1):
        h, w = max(1, h - 1), max(1, w - 1)
    while not fits(t, h, w) and t > 1:
        t -= 1
    if not fits(t, h, w):
        raise ValueError(f"{num_segments} segments do not fit visual_token_budget={config.visual_token_budget}")
    return t, h, w


def interpolate_positions(table, length):
    """Linear interpolation of the (max_frames, width) temporal table to `length` rows."""
    n = table.shape[0]
    if length == n:
        return table
    where = torch.linspace(0.0, n - 1.0, length) if length > 1 else torch.zeros(1)
    lo = torch.floor(where).long()
    hi = torch.clamp(lo + 1, max=n - 1)
    frac = (where - lo)[:, None].to(table.dtype)
    return table[lo] * (1 - frac) + table[hi] * frac


def time_features(seconds, count):
    """Sinusoidal features of segment start times, periods 1 s .. 10^4 s."""
    periods = torch.exp(torch.linspace(math.log(1.0), math.log(10000.0), count // 2))
    angles = seconds[..., None].float() * (2 * math.pi / periods)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class TemporalAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(width, width) for _ in range(4))

    def forward(self, x):
        b, t, w = x.shape
        split = lambda y: y.view(b, t, self.heads, w // self.heads).transpose(1, 2)
        out = nn.functional.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)),
                                                         split(self.v_proj(x)))
        return self.out_proj(out.transpose(1, 2).reshape(b, t, w))


class TemporalMLP(nn.Module):
    def __init__(self, width, hidden, act):
        super().__init__()
        self.fc1, self.fc2, self.act = nn.Linear(width, hidden), nn.Linear(hidden, width), ACT2FN[act]

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TemporalLayer(nn.Module):
    """x + attn(ln1(x) + pos); x + mlp(ln2(x)), attention across the frames at one location."""

    def __init__(self, vision):
        super().__init__()
        w = vision["hidden_size"]
        self.layer_norm1 = nn.LayerNorm(w, eps=vision["layer_norm_eps"])
        self.self_attn = TemporalAttention(w, vision["num_attention_heads"])
        self.layer_norm2 = nn.LayerNorm(w, eps=vision["layer_norm_eps"])
        self.mlp = TemporalMLP(w, vision["intermediate_size"], vision["hidden_act"])

    def forward(self, x, pos):
        x = x + self.self_attn(self.layer_norm1(x) + pos)
        return x + self.mlp(self.layer_norm2(x))


class Projector(nn.Module):
    """LayerNorm (unless `norm` is False: LLaVA's layout), Linear, activation, Linear."""

    def __init__(self, in_dim, hidden, out_dim, eps, norm, act):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim, eps=eps) if norm else nn.Identity()
        self.fc1, self.fc2, self.act = nn.Linear(in_dim, hidden), nn.Linear(hidden, out_dim), ACT2FN[act]

    def forward(self, x):
        return self.fc2(self.act(self.fc1(self.norm(x))))


class PegasusModel(PreTrainedModel):
    config_class = PegasusConfig
    base_model_prefix = "pegasus"
    main_input_name = "frames"

    def __init__(self, config):
        super().__init__(config)
        vision_config_cls, tower_cls = VISION_TOWERS[config.vision["model_type"]]
        self.vision_tower = tower_cls(vision_config_cls(**config.vision))
        width, dec = config.vision["hidden_size"], config.llm["hidden_size"]
        hidden = config.projector_hidden or dec
        if config.temporal_depth:
            self.temporal_position = nn.Parameter(torch.zeros(config.max_frames, width))
            self.temporal_layers = nn.ModuleList(TemporalLayer(config.vision) for _ in range(config.temporal_depth))
        projector = dict(eps=config.projector_norm_eps, norm=config.projector_norm, act=config.projector_act)
        self.vision_projector = Projector(width, hidden, dec, **projector)
        if config.audio:
            whisper = WhisperConfig(**config.audio)
            self.audio_encoder = WhisperEncoder(whisper)
            self.audio_projector = Projector(whisper.d_model, hidden, dec, **projector)
            self.mel = WhisperFeatureExtractor(feature_size=whisper.num_mel_bins)
        self.time_embed = nn.Linear(config.time_features, dec)
        llm = dict(config.llm)
        self.language_model = AutoModelForCausalLM.from_config(AutoConfig.for_model(llm.pop("model_type"), **llm))
        self.post_init()

    def _init_weights(self, module):
        pass  # every weight comes from the exported checkpoint

    # -- towers -----------------------------------------------------------------------------------
    def encode_video(self, frames):
        """uint8 (N, T, H, W, 3) -> feature grid (N, T, g, g, width)."""
        n, t = frames.shape[:2]
        mean, std = (torch.tensor(v, dtype=torch.float32) for v in (self.config.image_mean, self.config.image_std))
        pixels = (frames.float() / 255.0 - mean) / std
        pixels = pixels.reshape((n * t,) + pixels.shape[2:]).permute(0, 3, 1, 2)
        x = self.vision_tower(pixel_values=pixels.to(self.dtype)).last_hidden_state
        if self.config.vision["model_type"] == "clip_vision_model":
            x = x[:, 1:]  # the class token
        g, w = int(round(math.sqrt(x.shape[1]))), x.shape[-1]
        if self.config.temporal_depth:
            x = x.reshape(n, t, g * g, w).transpose(1, 2).reshape(n * g * g, t, w)
            pos = interpolate_positions(self.temporal_position, t)[None]
            for layer in self.temporal_layers:
                x = layer(x, pos)
            x = x.reshape(n, g * g, t, w).transpose(1, 2)
        return x.reshape(n, t, g, g, w)

    def encode_audio(self, waveform):
        """(N, samples) 16 kHz -> (N, positions, width): Whisper's encoder on any length up to 30 s, or
        (whisper_window) on the zero-padded 30 s window with the positions of the samples kept."""
        enc = self.audio_encoder
        window = 2 * enc.config.max_source_positions * self.mel.hop_length
        padding = dict(padding="max_length", max_length=window) if self.config.whisper_window else dict(
            padding="do_not_pad")
        mel = self.mel([w for w in waveform.float().cpu().numpy()], sampling_rate=16000, return_tensors="np",
                       **padding).input_features
        x = torch.from_numpy(np.ascontiguousarray(mel)).to(self.dtype)
        x = nn.functional.gelu(enc.conv2(nn.functional.gelu(enc.conv1(x)))).permute(0, 2, 1)
        x = x + enc.embed_positions.weight[: x.shape[1]]
        for layer in enc.layers:
            x = layer(x, attention_mask=None)
            x = x[0] if isinstance(x, tuple) else x
        return enc.layer_norm(x)[:, :-(-(waveform.shape[-1] // self.mel.hop_length) // 2)]

    # -- the decoder sequence ---------------------------------------------------------------------
    def prefix(self, frames, audio, segment_mask, audio_mask, segment_start, transcript, transcript_mask):
        """Per-segment tokens (B, S*K, W) and their validity (B, S*K), as Pegasus.prefix."""
        b, s = frames.shape[:2]
        pool = pool_shape(self.config, s)
        grid = self.encode_video(frames.reshape((b * s,) + frames.shape[2:]))
        if self.config.pool_after_projector:  # PLLaVA's order: every grid token projected, then pooled
            pooled = nn.functional.adaptive_avg_pool3d(self.vision_projector(grid).permute(0, 4, 1, 2, 3), pool)
            visual = pooled.flatten(2).transpose(1, 2).reshape(b, s, -1, self.dec_width)
        else:
            pooled = nn.functional.adaptive_avg_pool3d(grid.permute(0, 4, 1, 2, 3), pool)
            visual = self.vision_projector(pooled.flatten(2).transpose(1, 2)).reshape(b, s, -1, self.dec_width)
        marker = self.time_embed(time_features(segment_start, self.config.time_features).to(self.dtype))
        parts = [marker[:, :, None], visual]
        seg_valid = segment_mask.bool()[:, :, None]
        valid = [seg_valid, seg_valid.expand(visual.shape[:3])]
        if self.config.audio:
            features = self.encode_audio(audio.reshape(b * s, -1))
            pooled = nn.functional.adaptive_avg_pool1d(features.transpose(1, 2), self.config.audio_tokens)
            tokens = self.audio_projector(pooled.transpose(1, 2)).reshape(b, s, -1, self.dec_width)
            parts.append(tokens)
            valid.append((segment_mask.bool() & audio_mask.bool())[:, :, None].expand(tokens.shape[:3]))
        if self.config.transcript_tokens > 0:
            parts.append(self.embed(transcript))
            valid.append(transcript_mask.bool() & seg_valid)
        x = torch.cat(parts, dim=2).reshape(b, -1, self.dec_width)
        return x, torch.cat(valid, dim=2).reshape(b, -1)

    @property
    def dec_width(self):
        return self.config.llm["hidden_size"]

    def embed(self, tokens):
        return self.language_model.get_input_embeddings()(tokens.long())

    def decode(self, embeddings, mask):
        """Llama over `embeddings` (B, T, W) where `mask` (B, T) marks the valid tokens: positions count
        valid tokens only, and a key is visible when valid and not later than the query."""
        positions = torch.clamp(torch.cumsum(mask.long(), dim=-1) - 1, min=0)
        visible = mask[:, None, None, :] & (positions[:, None, None, :] <= positions[:, None, :, None])
        window = self.config.llm.get("sliding_window")
        if window:  # Mistral: a given 4-D mask is used as it is, so the window goes into it
            visible &= positions[:, None, None, :] > positions[:, None, :, None] - window
        return self.language_model(inputs_embeds=embeddings, attention_mask=visible, position_ids=positions).logits

    def forward(self, frames, audio, segment_mask, audio_mask, segment_start, transcript, transcript_mask, tokens,
                text_mask, **unused):
        """Logits over the text positions (B, L, vocab)."""
        x, mask = self.prefix(frames, audio, segment_mask, audio_mask, segment_start, transcript, transcript_mask)
        x = torch.cat([x, self.embed(tokens)], dim=1)
        mask = torch.cat([mask, text_mask.bool()], dim=1)
        return CausalLMOutput(logits=self.decode(x, mask)[:, -tokens.shape[1]:].float())
