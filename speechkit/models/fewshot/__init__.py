"""Few-shot keyword spotting: an embedding network and prototype heads (ProtoNet, D-ProtoNets).

* :class:`BCResNetEmbedding`: any BC-ResNet width up to its pooled layer, optional projection.
* :class:`PrototypeHead`: squared-Euclidean ProtoNet logits, with the D-ProtoNets dummy
  prototype (:class:`DummyGenerator`, learnable temperature ratio gamma) when ``dummy=True``.

The auxiliary LibriWord classifier of AuxSL is a plain ``nn.Linear`` owned by the task
(:class:`speechkit.tasks.fewshot.FewShotKwsTask`) and is not exported.
"""

from speechkit.models.fewshot.embedding import BCResNetEmbedding
from speechkit.models.fewshot.protonet import DummyGenerator, PrototypeHead, prototypes, squared_euclidean

__all__ = ["BCResNetEmbedding", "DummyGenerator", "PrototypeHead", "prototypes", "squared_euclidean"]
