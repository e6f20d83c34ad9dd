"""Judge prompts for the five Video-ChatGPT (QEFVC) criteria, our own wording of that protocol:
a system prompt stating what to grade, a user prompt with question / reference / prediction, and the
answer requested as a JSON object {"score": <integer 0-5>}."""
from __future__ import annotations

_ANSWER_FORMAT = ('Reply with only a JSON object of the form {"score": N}, where N is an integer from 0 '
                  '(worst) to 5 (best). No explanation.')

_SYSTEM = {
    "correctness": (
        "You grade answers about videos for correctness of information. Compare the predicted answer with "
        "the reference answer: reward facts that agree with the reference, penalise facts that contradict it "
        "or that the reference does not support. Paraphrases and synonyms are fine; wording is not graded."),
    "detail": (
        "You grade answers about videos for detail orientation. Judge how completely the predicted answer "
        "covers the points of the reference answer and how specific it is, rather than vague or generic. "
        "Missing points lower the grade; meaningful extra specifics consistent with the reference do not."),
    "context": (
        "You grade answers about videos for contextual understanding. Judge whether the predicted answer "
        "grasps the overall situation of the video as described by the reference answer, and whether it "
        "stays relevant to the question instead of drifting to unrelated content."),
    "temporal": (
        "You grade answers about videos for temporal understanding. Judge whether the predicted answer "
        "gets the order, timing and progression of events right with respect to the reference answer. "
        "Events in the wrong order, or a missing sequence, lower the grade."),
    "consistency": (
        "You grade a video model's consistency. It was asked two differently phrased questions with the same "
        "meaning. Judge whether its two answers agree with each other and with the reference answer. "
        "Contradictions between the two answers lower the grade the most."),
}

CRITERIA = ("correctness", "detail", "context", "temporal", "consistency")
CRITERION_TITLES = {"correctness": "Correctness of information", "detail": "Detail orientation",
                    "context": "Contextual understanding", "temporal": "Temporal understanding",
                    "consistency": "Consistency"}


def system_prompt(criterion: str) -> str:
    return _SYSTEM[criterion] + " " + _ANSWER_FORMAT


def single_answer_messages(criterion: str, question: str, reference: str, prediction: str) -> list[dict]:
    user = (f"Question: {question}\nReference answer: {reference}\nPredicted answer: {prediction}\n\n"
            f"Grade the predicted answer. {_ANSWER_FORMAT}")
    return [{"role": "system", "content": system_prompt(criterion)}, {"role": "user", "content": user}]


def consistency_messages(question1: str, question2: str, reference: str, prediction1: str,
                         prediction2: str) -> list[dict]:
    user = (f"Question 1: {question1}\nQuestion 2: {question2}\nReference answer: {reference}\n"
            f"Answer to question 1: {prediction1}\nAnswer to question 2: {prediction2}\n\n"
            f"Grade the consistency of the two answers. {_ANSWER_FORMAT}")
    return [{"role": "system", "content": system_prompt("consistency")}, {"role": "user", "content": user}]
