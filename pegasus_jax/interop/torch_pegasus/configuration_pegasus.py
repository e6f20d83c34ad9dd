"""Configuration of the exported whole Pegasus model (transformers custom-code convention).

Written into an export's `full/` folder beside modeling_pegasus.py; it imports only transformers, so
`AutoModel.from_pretrained(folder, trust_remote_code=True)` works without JAX. The three pretrained
towers keep their own transformers configs (as plain dicts); the fields here describe our parts.
"""
from transformers import PretrainedConfig


class PegasusConfig(PretrainedConfig):
    model_type = "pegasus_jax"

    def __init__(self, vision=None, audio=None, llm=None, temporal_depth=0, max_frames=16,
                 image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5), pool=(1, 1, 1), audio_tokens=0,
                 projector_hidden=0, visual_token_budget=4096, transcript_tokens=0, time_features=64,
                 projector_norm_eps=1e-5, projector_norm=True, projector_act="gelu", whisper_window=False,
                 pool_after_projector=False, **kwargs):
        self.vision = vision or {}  # CLIPVisionConfig / SiglipVisionConfig fields (model_type says which)
        self.audio = audio  # WhisperConfig fields, or None when the model has no audio encoder
        self.llm = llm or {}  # the decoder's LlamaConfig / Qwen2Config / MistralConfig fields (model_type says which)
        self.temporal_depth = temporal_depth
        self.max_frames = max_frames
        self.image_mean, self.image_std = list(image_mean), list(image_std)
        self.pool = list(pool)  # PLLaVA pooling target (T', h', w') per segment
        self.audio_tokens = audio_tokens
        self.projector_hidden = projector_hidden
        self.visual_token_budget = visual_token_budget
        self.transcript_tokens = transcript_tokens
        self.time_features = time_features
        self.projector_norm_eps = projector_norm_eps
        self.projector_norm = projector_norm  # False: LLaVA's projector (no input LayerNorm)
        self.projector_act = projector_act  # a transformers ACT2FN name
        self.whisper_window = whisper_window  # audio encoded in Whisper's zero-padded 30 s window
        self.pool_after_projector = pool_after_projector  # True: project every grid token, then pool (PLLaVA)
        super().__init__(**kwargs)
