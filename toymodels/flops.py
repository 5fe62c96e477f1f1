"""FLOPs per trained token (the peer's conventions) and accelerator peaks, for MFU."""


# Dense peaks in TFLOP/s (vendor data sheets, SXM parts; no sparsity): fp32, tf32, bf16.
PEAKS = {
    "H200": (67.0, 494.7, 989.4),
    "H100 80GB HBM3": (67.0, 494.7, 989.4),
    "H100 PCIe": (51.2, 378.0, 756.0),
    "A100": (19.5, 156.0, 312.0),
}


def flop_counts(L: int, d: int, V: int, T: int, params: int) -> dict:
    """FLOPs per trained token (forward + backward = 3 x forward), peer conventions."""
    matmul = L * 12 * d * d + d * V
    return {"flops_per_token_6N": 6 * params, "flops_per_token_detailed": 6 * matmul + 3 * L * 4 * T * d}



def device_peaks(kind: str) -> dict:
    """{"fp32", "tf32", "bf16"} peaks (TFLOP/s) of a device kind, or {} when it is not listed."""
    for name, (fp32, tf32, bf16) in PEAKS.items():
        if name in kind:
            return {"fp32": fp32, "tf32": tf32, "bf16": bf16}
    return {}
