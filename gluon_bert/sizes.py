"""Model sizes without building a model: the named presets, the parameter
count, the training memory estimate, and the check pretraining makes with
it before the first step (one line of sizes; a configuration that cannot
fit is a one-line error with a batch that would).
"""
import logging

from .utils import GluonBertError

__all__ = ['PRESETS', 'parameter_count', 'estimate_memory', 'check_memory',
           'GPU_MARGIN', 'GPU_REFUSE']

logger = logging.getLogger(__name__)

#: Named model sizes: (num_hiddens, ffn_num_hiddens, num_heads, num_blks).
PRESETS = {
    'small': (128, 256, 2, 2),       # the guide's model
    'd2l-small': (256, 512, 4, 2),   # d2l's pretrained 'bert.small'
    'base': (768, 3072, 12, 12),     # BERT_BASE
    'large': (1024, 4096, 16, 24),   # BERT_LARGE
}


def parameter_count(vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                    num_blks, max_len=1000, tie_output=False):
    """Scalar parameters of a BERTModel, computed without building it (with
    ``tie_output`` the MLM output layer's weight is the token embedding's)."""
    h, f = num_hiddens, ffn_num_hiddens
    block = (4 * (h * h + h)         # W_q, W_k, W_v, W_o with biases
             + 2 * 2 * h             # two LayerNorms
             + h * f + f + f * h + h)  # the FFN
    embeddings = vocab_size * h + 2 * h + max_len * h
    heads = ((h * h + h) * 2         # NSP hidden layer, MLM first layer
             + 2 * h                 # MLM LayerNorm
             + (0 if tie_output else h * vocab_size)  # MLM output weight
             + vocab_size            # and its bias
             + h * 2 + 2)            # NSP output layer
    return embeddings + num_blks * block + heads


def estimate_memory(vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                    num_blks, max_len, batch_size, num_devices=1,
                    pos_len=1000, mlm_chunks=8, tie_output=False):
    """Rough training memory per device, in bytes, for the fused loss.

    Returns a dict: ``parameters`` (count), ``state`` (weights, gradients and
    Adam's two moments: 16 bytes a parameter), ``activations`` (what one
    device keeps for the backward pass of its share of ``batch_size``) and
    ``per_example`` (activations of one example).  The constants were fitted
    to the small model on a CPU; treat the result as an estimate, not a
    promise.
    """
    count = parameter_count(vocab_size, num_hiddens, ffn_num_hiddens,
                            num_heads, num_blks, pos_len, tie_output)
    # Per token and block: ~16 hidden-sized tensors (projections, head
    # transposes, dropout masks, residuals, LayerNorm), 4 attention-score
    # rows per head (scores, softmax, dropout mask and output) and 3
    # FFN-sized tensors
    per_token = num_blks * (16 * num_hiddens + 4 * num_heads * max_len
                            + 3 * ffn_num_hiddens)
    # MLM head: log-softmax kept for every slot, plus the backward buffers
    # of one chunk (15 % of the tokens are predicted)
    slots = 0.15 * max_len
    mlm = slots * vocab_size * (1 + 3 / mlm_chunks)
    per_example = 4 * (max_len * per_token + mlm)
    share = -(-batch_size // num_devices)
    return {'parameters': count, 'state': 16 * count,
            'activations': per_example * share, 'per_example': per_example}


def _gb(n):
    return f'{n / 2 ** 30:.2f} GB'


#: Extra room on a GPU for what the estimate leaves out (cuDNN/cuBLAS
#: workspaces, the CUDA context); its constants were fitted on a CPU.
GPU_MARGIN = 1.1
#: On a GPU, only refuse when the estimate exceeds what is free this much.
GPU_REFUSE = 1.5


def _memory_pools(devices):
    """Devices grouped by the memory they draw on: all CPU contexts share
    the machine's RAM, every GPU has its own."""
    pools = {}
    for device in devices:
        key = 'cpu' if device.device_type == 'cpu' else str(device)
        pools.setdefault(key, []).append(device)
    return list(pools.values())


def check_memory(config, vocab_size, devices, free_memory=None):
    """Log the size estimate; a configuration that cannot fit is an error.

    Every device is checked (CPU contexts together: they share RAM).  On a
    CPU the estimate must fit in 90 % of the available memory; on a GPU,
    with a margin for workspaces, a tight fit is only a warning, and the
    run is refused when the estimate clearly exceeds the free memory.
    """
    from .devices import available_memory
    free_memory = free_memory or available_memory
    est = estimate_memory(vocab_size, config.num_hiddens,
                          config.ffn_num_hiddens, config.num_heads,
                          config.num_blks, config.max_len, config.batch_size,
                          len(devices), config.pos_len,
                          tie_output=config.tie_output)
    need = est['state'] + est['activations']
    pools = [(pool, free_memory(pool[0])) for pool in _memory_pools(devices)]
    free_text = ', '.join(f'{_gb(free)} available on '
                          + ('/'.join(str(d) for d in pool))
                          for pool, free in pools)
    logger.info(
        f'Model: {est["parameters"] / 1e6:.1f}M parameters; estimated memory '
        f'per device: {_gb(est["state"])} for weights, gradients and Adam, '
        f'{_gb(est["activations"])} of activations for '
        f'{-(-config.batch_size // len(devices))} pairs of {config.max_len} '
        f'tokens; {free_text}')
    for pool, free in pools:
        gpu = pool[0].device_type == 'gpu'
        wanted = need * len(pool) * (GPU_MARGIN if gpu else 1.0)
        if wanted <= 0.9 * free or config.no_memory_check:
            continue
        if gpu and wanted <= GPU_REFUSE * free:
            logger.warning(f'{pool[0]} may run out of memory: about '
                           f'{_gb(wanted)} needed, {_gb(free)} free (the '
                           'estimate is rough on GPUs); lower --batch-size if '
                           'it does')
            continue
        budget = 0.9 * free / len(pool) - est['state']
        fits = int(budget // est['per_example']) if budget > 0 else 0
        if fits < 1:
            hint = ('not even one example fits: lower max_len, use a '
                    'smaller preset, or a device with more memory')
        else:
            per_batch = fits * len(devices)
            steps = -(-config.batch_size * config.accumulate // per_batch)
            hint = (f'about {per_batch} pairs fit per batch: try batch_size '
                    f'{per_batch} accumulate {steps} for the same '
                    f'{per_batch * steps}-pair steps, or lower max_len')
        where = ('/'.join(str(d) for d in pool) + ' (they share the RAM)'
                 if len(pool) > 1 else str(pool[0]))
        raise GluonBertError(
            f'this configuration needs about {_gb(wanted)} but {where} has '
            f'{_gb(free)} available: {hint} (or pass no_memory_check to '
            'try anyway)', ['batch_size', 'accumulate', 'max_len', 'preset',
                            'no_memory_check'])
