"""The model graph and its posterior factorization."""
from amortize.graph.factorize import Factor, Factorization, factor_kind, factorize
from amortize.graph.model_graph import (ModelGraph, Plate, Site, build_graph, covariate_names, graph_for,
                                        resolve_graph, response_names)

__all__ = ["Factor", "Factorization", "ModelGraph", "Plate", "Site", "build_graph", "covariate_names",
           "factor_kind", "factorize", "graph_for", "resolve_graph", "response_names"]
