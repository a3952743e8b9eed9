"""The SoC names ATC's ``--soc_version`` takes.

ATC's guide: on the device, ``npu-smi info`` shows the chip's Name; the value is ``Ascend<Name>`` (for Atlas A3
products ``npu-smi info -t board -i <id> -c <chip>`` gives Chip Name and NPU Name: ``<Chip Name>_<NPU Name>``).
The list below is the union of the names Huawei's own frameworks accept from ``aclrtGetSocName`` (sources in
``SOURCES``); ATC itself checks the name against the SoCs its installed operator packages support.
"""

from __future__ import annotations

SOCS: tuple[str, ...] = (
    # Atlas 200/300/500 inference products (Ascend 310)
    "Ascend310",
    # Atlas 200I/500 A2 inference products, Orange Pi AIpro (Ascend 310B)
    "Ascend310B1", "Ascend310B2", "Ascend310B3", "Ascend310B4",
    # Atlas inference products: Atlas 300I Pro / 300V / 300I Duo (Ascend 310P)
    "Ascend310P1", "Ascend310P2", "Ascend310P3", "Ascend310P4",
    # Atlas training products (Ascend 910)
    "Ascend910", "Ascend910A", "Ascend910B", "Ascend910PremiumA", "Ascend910ProA", "Ascend910ProB",
    # Atlas A2 training / inference products (Ascend 910B)
    "Ascend910B1", "Ascend910B2", "Ascend910B2C", "Ascend910B3", "Ascend910B4", "Ascend910B4-1",
    # Atlas A3 training / inference products
    "Ascend910_9361", "Ascend910_9362", "Ascend910_9372", "Ascend910_9381", "Ascend910_9382",
    "Ascend910_9391", "Ascend910_9392",
)

SOURCES = (
    "Ascend/pytorch torch_npu/csrc/core/npu/NpuVariables.cpp (commit 00acf37e34d402018d5fc5ad1249d524193690a7): "
    "socVersionMap",
    "MindSpore Ascend device context (kAscendSocVersions, mapping aclrtGetSocName to the SoC family; adds "
    "Ascend310, Ascend310P)",
    "triton-ascend get_ascend_arch_from_env valid_arch_list (adds Ascend910_9362)",
    "CANN ATC guide, --soc_version: the value is Ascend<Name> from npu-smi info",
)

