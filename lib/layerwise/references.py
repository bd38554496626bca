"""The works the book cites, once, and the references section every chapter ends with.

Chapters call :func:`references_markdown` with the keys they cite; docstrings cite the same works by
author, year and equation. Entries give what a reader needs to find the work: authors, year,
title, venue and an arXiv id or DOI where there is one.
"""

from __future__ import annotations

__all__ = ["REFERENCES", "references_markdown"]

#: key -> (short citation, full reference).
REFERENCES: dict[str, tuple[str, str]] = {
    "zhao2024": ("Zhao, Ziser and Cohen 2024",
                 "Zheng Zhao, Yftah Ziser, Shay B. Cohen. *Layer by Layer: Uncovering Where Multi-Task Learning "
                 "Happens in Instruction-Tuned Large Language Models.* EMNLP 2024, pp. 15195-15214. "
                 "[arXiv:2410.20008](https://arxiv.org/abs/2410.20008)"),
    "zhao2022": ("Zhao, Ziser and Cohen 2022",
                 "Zheng Zhao, Yftah Ziser, Shay B. Cohen. *Understanding Domain Learning in Language Models "
                 "Through Subpopulation Analysis.* BlackboxNLP 2022. "
                 "[arXiv:2210.12553](https://arxiv.org/abs/2210.12553)"),
    "wei2022": ("Wei et al. 2022",
                "Jason Wei, Maarten Bosma, Vincent Y. Zhao, et al. *Finetuned Language Models Are Zero-Shot "
                "Learners.* ICLR 2022 (the Flan 2021 collection and its 12 task clusters). "
                "[arXiv:2109.01652](https://arxiv.org/abs/2109.01652)"),
    "hu2022": ("Hu et al. 2022",
               "Edward J. Hu, Yelong Shen, Phillip Wallis, et al. *LoRA: Low-Rank Adaptation of Large Language "
               "Models.* ICLR 2022. [arXiv:2106.09685](https://arxiv.org/abs/2106.09685)"),
    "kornblith2019": ("Kornblith et al. 2019",
                      "Simon Kornblith, Mohammad Norouzi, Honglak Lee, Geoffrey Hinton. *Similarity of Neural "
                      "Network Representations Revisited.* ICML 2019 (linear and RBF CKA). "
                      "[arXiv:1905.00414](https://arxiv.org/abs/1905.00414)"),
    "gretton2005": ("Gretton et al. 2005",
                    "Arthur Gretton, Olivier Bousquet, Alex Smola, Bernhard Schölkopf. *Measuring Statistical "
                    "Dependence with Hilbert-Schmidt Norms.* ALT 2005 (HSIC). "
                    "[doi:10.1007/11564089_7](https://doi.org/10.1007/11564089_7)"),
    "song2012": ("Song et al. 2012",
                 "Le Song, Alex Smola, Arthur Gretton, Justin Bedo, Karsten Borgwardt. *Feature Selection via "
                 "Dependence Maximization.* JMLR 13, 2012 (the unbiased HSIC estimator; first in ICML 2007). "
                 "[JMLR](https://jmlr.org/papers/v13/song12a.html)"),
    "nguyen2021": ("Nguyen, Raghu and Kornblith 2021",
                   "Thao Nguyen, Maithra Raghu, Simon Kornblith. *Do Wide and Deep Networks Learn the Same "
                   "Things?* ICLR 2021 (minibatch CKA). [arXiv:2010.15327](https://arxiv.org/abs/2010.15327)"),
    "murphy2024": ("Murphy, Zylberberg and Fyshe 2024",
                   "Alex Murphy, Joel Zylberberg, Alona Fyshe. *Correcting Biased Centered Kernel Alignment "
                   "Measures in Biological and Artificial Neural Networks.* ICLR 2024 Re-Align workshop "
                   "(the bias of CKA at few examples and many features). "
                   "[arXiv:2405.01012](https://arxiv.org/abs/2405.01012)"),
    "raghu2017": ("Raghu et al. 2017",
                  "Maithra Raghu, Justin Gilmer, Jason Yosinski, Jascha Sohl-Dickstein. *SVCCA: Singular Vector "
                  "Canonical Correlation Analysis for Deep Learning Dynamics and Interpretability.* NeurIPS 2017. "
                  "[arXiv:1706.05806](https://arxiv.org/abs/1706.05806)"),
    "morcos2018": ("Morcos, Raghu and Bengio 2018",
                   "Ari S. Morcos, Maithra Raghu, Samy Bengio. *Insights on Representational Similarity in Neural "
                   "Networks with Canonical Correlation.* NeurIPS 2018 (PWCCA). "
                   "[arXiv:1806.05759](https://arxiv.org/abs/1806.05759)"),
    "ding2021": ("Ding, Denain and Steinhardt 2021",
                 "Frances Ding, Jean-Stanislas Denain, Jacob Steinhardt. *Grounding Representation Similarity "
                 "with Statistical Testing.* NeurIPS 2021 (orthogonal Procrustes distance). "
                 "[arXiv:2108.01661](https://arxiv.org/abs/2108.01661)"),
    "kriegeskorte2008": ("Kriegeskorte, Mur and Bandettini 2008",
                         "Nikolaus Kriegeskorte, Marieke Mur, Peter Bandettini. *Representational Similarity "
                         "Analysis - Connecting the Branches of Systems Neuroscience.* Frontiers in Systems "
                         "Neuroscience 2, 2008. [doi:10.3389/neuro.06.004.2008](https://doi.org/10.3389/neuro.06.004.2008)"),
    "klabunde2023": ("Klabunde et al. 2023",
                     "Max Klabunde, Tobias Schumacher, Markus Strohmaier, Florian Lemmerich. *Similarity of Neural "
                     "Network Models: A Survey of Functional and Representational Measures.* ACM Computing "
                     "Surveys 2025. [arXiv:2305.06329](https://arxiv.org/abs/2305.06329)"),
    "roy2007": ("Roy and Vetterli 2007",
                "Olivier Roy, Martin Vetterli. *The Effective Rank: A Measure of Effective Dimensionality.* "
                "EUSIPCO 2007 (effective rank of a spectrum)."),
    "hudson1966": ("Hudson 1966",
                   "Derek J. Hudson. *Fitting Segmented Curves Whose Join Points Have to Be Estimated.* Journal of "
                   "the American Statistical Association 61(316), 1966, pp. 1097-1129 (segmented regression). "
                   "[doi:10.1080/01621459.1966.10482198](https://doi.org/10.1080/01621459.1966.10482198)"),
    "muggeo2003": ("Muggeo 2003",
                   "Vito M. R. Muggeo. *Estimating Regression Models with Unknown Break-Points.* Statistics in "
                   "Medicine 22(19), 2003, pp. 3055-3071. [doi:10.1002/sim.1545](https://doi.org/10.1002/sim.1545)"),
    "efron1987": ("Efron 1987",
                  "Bradley Efron. *Better Bootstrap Confidence Intervals.* Journal of the American Statistical "
                  "Association 82(397), 1987 (BCa intervals). [doi:10.2307/2289144](https://doi.org/10.2307/2289144)"),
    "lin2004": ("Lin 2004",
                "Chin-Yew Lin. *ROUGE: A Package for Automatic Evaluation of Summaries.* ACL Workshop on Text "
                "Summarization Branches Out, 2004 (ROUGE-L)."),
    "gemma2025": ("Gemma Team 2025",
                  "Gemma Team, Google DeepMind. *Gemma 3 Technical Report.* 2025 (Gemma 3 270M). "
                  "[arXiv:2503.19786](https://arxiv.org/abs/2503.19786)"),
    "allal2025": ("Allal et al. 2025",
                  "Loubna Ben Allal, Anton Lozhkov, Elie Bakouch, et al. *SmolLM2: When Smol Goes Big - "
                  "Data-Centric Training of a Small Language Model.* 2025. "
                  "[arXiv:2502.02737](https://arxiv.org/abs/2502.02737)"),
}


def references_markdown(*keys: str) -> str:
    """The references section of a chapter: the paper first, then ``keys`` in the order given.

    Args:
        keys: keys of :data:`REFERENCES`; ``"zhao2024"`` (the reproduced paper) is always listed.

    Returns:
        Markdown: a bulleted list of full references.

    Raises:
        KeyError: a key that is not in :data:`REFERENCES` (the message lists the valid keys).
    """
    unknown = [k for k in keys if k not in REFERENCES]
    if unknown:
        raise KeyError(f"references: unknown key(s) {unknown}; valid: {', '.join(sorted(REFERENCES))}")
    ordered = ["zhao2024"] + [k for k in dict.fromkeys(keys) if k != "zhao2024"]
    return "\n".join(f"- {REFERENCES[k][1]}" for k in ordered)
