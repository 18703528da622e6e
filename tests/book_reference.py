"""The book's own training step, built from the installed d2l: the oracle
the tests compare gluon_bert against (kept here, apart from the code under
test)."""
from d2l import mxnet as d2l
from mxnet import autograd, gluon


def book_step(net, loss, vocab_size, trainer, batch, devices):
    """One step of the book's ``train_bert`` loop, without its Animator:
    ``split_and_load`` shards, ``d2l._get_batch_loss_bert``, a backward pass
    per shard, ``trainer.step(1)``.  Returns the per-shard MLM and NSP
    losses."""
    shards = [gluon.utils.split_and_load(x, devices, even_split=False)
              for x in batch]
    with autograd.record():
        mlm_ls, nsp_ls, ls = d2l._get_batch_loss_bert(net, loss, vocab_size,
                                                      *shards)
    for l in ls:
        l.backward()
    trainer.step(1)
    return mlm_ls, nsp_ls


def copy_d2l_parameters(d2l_net, net):
    """Copy an initialized ``d2l.BERTModel``'s parameters into ``net``.

    Both models register their parameters in the same order (the book's
    layout), so they are matched one by one; any difference in count or
    shape is an error.  Returns ``net``.
    """
    src = list(d2l_net.collect_params().values())
    dst = list(net.collect_params().values())
    if len(src) != len(dst):
        raise ValueError(f'the d2l model has {len(src)} parameters, this one '
                         f'{len(dst)}: build both with the same settings')
    for p, q in zip(src, dst):
        if p.shape != q.shape:
            raise ValueError(f'{p.name} {p.shape} does not fit {q.name} '
                             f'{q.shape}: build both with the same settings')
        q.set_data(p.data())
    return net
