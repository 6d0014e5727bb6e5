"""A Hugging Face ``BertModel`` wrapped with masked mean pooling (the sentence-embedding head
of sentence-transformers, without the L2 norm): the test encoders' export module."""

from __future__ import annotations

import torch


class MeanPooledBert(torch.nn.Module):
    """``bert(input_ids, attention_mask, token_type_ids)`` → masked mean of the last hidden
    state over real tokens, (N, H)."""

    def __init__(self, bert: torch.nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids):
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                      token_type_ids=token_type_ids).last_hidden_state  # (N, S, H)
        m = attention_mask.unsqueeze(-1).to(h.dtype)  # (N, S, 1)
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)  # (N, H)
