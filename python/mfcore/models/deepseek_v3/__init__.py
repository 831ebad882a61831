"""DeepSeek-V3 (MLA, sigmoid-routed MoE, multi-token prediction): config, Cell (``model.py``,
MindSpore), parameter counts, HF names and tensor-parallel plan (``parallel_plan.py``)."""
from mfcore.models.deepseek_v3 import counting, hf_names
from mfcore.models.deepseek_v3.config import MODEL_TYPES, DeepseekV3Config, adapt_fields
from mfcore.models.deepseek_v3.parallel_plan import PLAN
from mfcore.models.family import ModelFamily

FAMILY = ModelFamily(
    name="deepseek_v3", model_types=MODEL_TYPES, config_class=DeepseekV3Config,
    model_class_path="mfcore.models.deepseek_v3.model:DeepseekV3ForCausalLM", adapt_fields=adapt_fields,
    parameter_breakdown=counting.parameter_breakdown, attention_shape=counting.attention_shape,
    hf_architectures=hf_names.ARCHITECTURES, hf_copies=hf_names.hf_copies,
    tensor_parallel_plan=PLAN)
