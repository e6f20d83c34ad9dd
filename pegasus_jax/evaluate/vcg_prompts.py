"""Judge prompts for the five Video-ChatGPT (QEFVC) criteria, our own wording of that protocol:
a system prompt stating what to grade, a user prompt with question / correct answer / predicted answer,
and the answer requested as an object {"score": <integer 0-5>} (a Python-dict reply, as Video-ChatGPT
asks for, is accepted too)."""
from __future__ import annotations

_ANSWER_FORMAT = ('Reply with only a JSON object of the form {"score": N}, where N is an integer from 0 '
                  '(worst) to 5 (best). No explanation.')

_SYSTEM = {
    # The three QEFVC criteria follow Video-ChatGPT's evaluation prompts point by point, in our words.
    "correctness": (
        "You evaluate the factual accuracy of generated answers to questions about videos. Compare the "
        "predicted answer with the correct answer and decide whether they are factually consistent.\n"
        "INSTRUCTIONS:\n"
        "- Focus on factual consistency with the correct answer: the prediction must not misinterpret the "
        "video or state wrong information.\n"
        "- The prediction must be factually accurate and agree with the content of the video.\n"
        "- Synonyms and paraphrases count as matches.\n"
        "- Grade the factual accuracy of the prediction against the correct answer."),
    "detail": (
        "You evaluate the detail orientation of generated answers to questions about videos. Compare the "
        "predicted answer with the correct answer and judge its level of detail: completeness and specificity.\n"
        "INSTRUCTIONS:\n"
        "- Check that the prediction covers every major point of the video and leaves out no key aspect.\n"
        "- Check that it gives specific details tied to particular elements of the video, not only generic "
        "statements.\n"
        "- Synonyms and paraphrases count as matches.\n"
        "- Give one score that reflects both completeness and specificity."),
    "context": (
        "You evaluate the contextual understanding of generated answers to questions about videos. Compare "
        "the predicted answer with the correct answer and decide whether it fits the overall context of the "
        "video.\n"
        "INSTRUCTIONS:\n"
        "- Check that the prediction fits the overall context of the video and says nothing out of context or "
        "misaligned with it.\n"
        "- It must capture the main themes and sentiments of the video.\n"
        "- Synonyms and paraphrases count as matches.\n"
        "- Grade the contextual understanding of the prediction against the correct answer."),
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


def qa_pair(question: str, correct: str, prediction: str) -> str:
    """The pair to grade, laid out as in Video-ChatGPT's judge prompts (also used by `openqa`)."""
    return (f"Evaluate this question-answer pair about a video:\n\nQuestion: {question}\nCorrect Answer: {correct}\n"
            f"Predicted Answer: {prediction}\n\n")


def single_answer_messages(criterion: str, question: str, reference: str, prediction: str) -> list[dict]:
    user = f"{qa_pair(question, reference, prediction)}Grade the predicted answer. {_ANSWER_FORMAT}"
    return [{"role": "system", "content": system_prompt(criterion)}, {"role": "user", "content": user}]


def consistency_messages(question1: str, question2: str, reference: str, prediction1: str,
                         prediction2: str) -> list[dict]:
    user = (f"Question 1: {question1}\nQuestion 2: {question2}\nReference answer: {reference}\n"
            f"Answer to question 1: {prediction1}\nAnswer to question 2: {prediction2}\n\n"
            f"Grade the consistency of the two answers. {_ANSWER_FORMAT}")
    return [{"role": "system", "content": system_prompt("consistency")}, {"role": "user", "content": user}]
