"""The Llama family (Llama 2/3; Qwen2/3 and Mistral configs share its shape): config, Cell
(``model.py``, MindSpore), parameter counts, HF names and tensor-parallel plan."""
from mfcore.models.family import ModelFamily
from mfcore.models.llama import counting, hf_names
from mfcore.models.llama.config import MODEL_TYPES, LlamaConfig, adapt_fields
from mfcore.models.llama.parallel_plan import PLAN

FAMILY = ModelFamily(
    name="llama", model_types=MODEL_TYPES, config_class=LlamaConfig,
    model_class_path="mfcore.models.llama.model:LlamaForCausalLM", adapt_fields=adapt_fields,
    parameter_breakdown=counting.parameter_breakdown, attention_shape=counting.attention_shape,
    hf_architectures=hf_names.ARCHITECTURES, tensor_parallel_plan=PLAN)
