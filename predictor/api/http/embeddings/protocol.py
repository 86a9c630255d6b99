"""Request and response schemas of the embedding routes (SPEC "OpenAI-compatible ... routes")."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

Input = str | list[str]
EncodingFormat = Literal["float", "base64"]
EmbedDtype = Literal["float32", "float16"]
_EMBED_DTYPE = ("Element type of every base64 vector (dense, and each ColBERT matrix as one "
                "string, rows concatenated), little-endian; vLLM's convention. Only with "
                "encoding_format 'base64'; 'float' output is JSON numbers either way.")

TOKEN_IDS_MESSAGE = (
    "input: token ids are not accepted. This server embeds text with its own model's "
    "tokenizer; ids from another tokenizer (such as OpenAI's cl100k, which langchain-openai "
    "sends by default) would give wrong vectors. Send the texts themselves: with "
    "langchain-openai's OpenAIEmbeddings, set check_embedding_ctx_length=False.")


def _is_token_ids(value) -> bool:
    def ints(items) -> bool:
        return bool(items) and all(isinstance(i, int) and not isinstance(i, bool) for i in items)

    return isinstance(value, list) and bool(value) and (
        ints(value) or all(isinstance(row, list) and ints(row) for row in value))


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: Input = Field(description="A text or a list of texts.")
    model: str | None = Field(None, description="Served name, Hugging Face id, or omitted.")
    truncate: bool = Field(True, description="Truncate texts over max_length (else 400).")
    max_length: int | None = Field(None, ge=1, description="Token limit; the model's by default.")
    input_type: Literal["query", "passage", "document", "search_query",
                        "search_document"] | None = Field(
        None, description="What the texts are, for models that prefix them (E5 'query: ' / "
                          "'passage: ', BGE's query instruction); 'search_query' and "
                          "'search_document' are Cohere's names. Omitted: the model's default "
                          "(passage for E5, no instruction for BGE).")
    is_query: bool | None = Field(None, description="Same as input_type 'query' (true) or "
                                                    "'passage' (false).")

    @field_validator("input", mode="before")
    @classmethod
    def _no_token_ids(cls, value):
        """OpenAI also takes token-id arrays; ours would be another tokenizer's: a clear 400."""
        if _is_token_ids(value):
            raise PydanticCustomError("token_ids_not_accepted", TOKEN_IDS_MESSAGE)
        return value


class EmbeddingsRequest(_Request):
    encoding_format: EncodingFormat = "float"
    embed_dtype: EmbedDtype = Field("float32", description=_EMBED_DTYPE)
    dimensions: int | None = Field(None, description="Rejected: BGE-M3 is not Matryoshka-trained.")
    user: str | None = Field(None, description="Accepted for OpenAI compatibility; unused.")
    return_dense: bool | None = None
    return_sparse: bool | None = None
    return_colbert: bool | None = None
    sparse_token_mapping: Literal["tokenizer", "hash"] | None = None


class SparseEmbeddingsRequest(_Request):
    return_tokens: bool = False
    sparse_token_mapping: Literal["tokenizer", "hash"] | None = Field(
        None, description="Index mapping; the server's default when omitted.")


class HybridEmbeddingsRequest(_Request):
    return_colbert: bool = False
    encoding_format: EncodingFormat = Field(
        "float", description="'base64': dense and each ColBERT matrix as base64 strings.")
    embed_dtype: EmbedDtype = Field("float32", description=_EMBED_DTYPE)
    return_tokens: bool = False
    sparse_token_mapping: Literal["tokenizer", "hash"] | None = None


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class SparseOut(BaseModel):
    indices: list[int]
    values: list[float]


class MappedSparseOut(SparseOut):
    mapping: Literal["tokenizer", "hash"]
    index_space: int
    tokens: list[str] | None = None


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str | None = None
    dense_embedding: list[float] | str | None = None
    sparse_embedding: SparseOut | None = None
    colbert_embedding: list[list[float]] | str | None = None


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: Usage
    embedding_types: list[Literal["dense", "sparse", "colbert"]] = Field(
        default_factory=list, description="The outputs computed (seed 001's field).")


class SparseData(BaseModel):
    object: Literal["sparse_embedding"] = "sparse_embedding"
    index: int
    sparse: MappedSparseOut


class SparseEmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[SparseData]
    model: str
    usage: Usage


class HybridData(BaseModel):
    object: Literal["hybrid_embedding"] = "hybrid_embedding"
    index: int
    dense: list[float] | str
    sparse: MappedSparseOut
    colbert: list[list[float]] | str | None = None


class HybridEmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[HybridData]
    model: str
    usage: Usage
