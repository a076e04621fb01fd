"""Retriever adapters for agent frameworks, each in its own module so that importing
contextd (or its client) never imports a framework:

- ``contextd.adapters.llamaindex.ContextdRetriever``: a LlamaIndex ``BaseRetriever``.
- ``contextd.adapters.langchain.ContextdRetriever``: a LangChain ``BaseRetriever``
  (``pip install 'contextd[langchain]'``).
"""
