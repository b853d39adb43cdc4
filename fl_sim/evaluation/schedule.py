"""Which rounds the eavesdropper attacks (``attack_rounds``): a long federation is attacked
where it matters, every round is still captured and its global accuracy recorded.

Terms, comma-separated: ``all`` (every round, the default), a round number, ``every:N``
(rounds N, 2N, 3N, ...), ``first`` and ``last`` (round 1 and the run's last round).
E.g. ``first,every:10,last`` or ``1,2,5,10,20,50``.
"""

from __future__ import annotations

from dataclasses import dataclass

TERMS = "all, a round number, every:N, first, last"


@dataclass(frozen=True)
class AttackSchedule:
    """The parsed ``attack_rounds`` of a run with ``rounds`` rounds."""

    spec: str
    rounds: int
    every_round: bool
    listed: frozenset[int]
    periods: tuple[int, ...]

    @classmethod
    def parse(cls, spec: str, rounds: int) -> AttackSchedule:
        """Raise ValueError naming a bad term and the valid ones."""
        every_round, listed, periods = False, set(), []
        terms = [t.strip() for t in spec.split(",") if t.strip()]
        if not terms:
            raise ValueError(f"attack_rounds {spec!r} is empty; terms: {TERMS}")
        for term in terms:
            number = term.removeprefix("every:")
            if term == "all":
                every_round = True
            elif term in ("first", "last"):
                listed.add(1 if term == "first" else rounds)
            elif number.isdigit() and int(number) >= 1:
                if term.startswith("every:"):
                    periods.append(int(number))
                else:
                    listed.add(int(number))
            else:
                raise ValueError(
                    f"attack_rounds: bad term {term!r} in {spec!r}; terms: {TERMS} (N >= 1)"
                )
        beyond = sorted(r for r in listed if r > rounds)
        if beyond:
            raise ValueError(
                f"attack_rounds: round(s) {', '.join(map(str, beyond))} in {spec!r} are beyond "
                f"the run's rounds={rounds}"
            )
        return cls(spec, rounds, every_round, frozenset(listed), tuple(periods))

    def __contains__(self, server_round: object) -> bool:
        if not isinstance(server_round, int):
            return False
        return (
            self.every_round
            or server_round in self.listed
            or any(server_round % n == 0 for n in self.periods)
        )

    def rounds_attacked(self) -> list[int]:
        """The scheduled rounds among 1..rounds."""
        return [r for r in range(1, self.rounds + 1) if r in self]
