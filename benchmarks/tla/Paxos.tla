-------------------------------- MODULE Paxos --------------------------------
(* Single-decree Paxos as in spec/paxos.py, for running TLC side by side with *)
(* distcheck (benchmarks/paxos_vs_tlc.py).  The abstraction of Lamport's      *)
(* Turing-award lecture: per acceptor maxBal, maxVBal, maxVal, and a message  *)
(* set that is never emptied.  Ballots are bounded by MaxBallot so that TLC  *)
(* can enumerate them.                                                       *)
EXTENDS Integers, TLC
CONSTANTS Value, Acceptor, Quorum, MaxBallot
Ballot == 0..MaxBallot
None == "none"
VARIABLES maxBal, maxVBal, maxVal, msgs
vars == <<maxBal, maxVBal, maxVal, msgs>>

Init == /\ maxBal = [a \in Acceptor |-> -1]
        /\ maxVBal = [a \in Acceptor |-> -1]
        /\ maxVal = [a \in Acceptor |-> None]
        /\ msgs = {}

Send(m) == msgs' = msgs \cup {m}

Phase1a(b) == /\ Send([type |-> "1a", bal |-> b])
              /\ UNCHANGED <<maxBal, maxVBal, maxVal>>

Phase1b(a) == /\ \E m \in msgs :
                  /\ m.type = "1a"
                  /\ m.bal > maxBal[a]
                  /\ maxBal' = [maxBal EXCEPT ![a] = m.bal]
                  /\ Send([type |-> "1b", acc |-> a, bal |-> m.bal,
                           mbal |-> maxVBal[a], mval |-> maxVal[a]])
              /\ UNCHANGED <<maxVBal, maxVal>>

(* TLC generates one successor per quorum that satisfies this condition, so   *)
(* its "generated" count exceeds distcheck's, which evaluates it as a plain   *)
(* condition; distinct states and depth are the same.                         *)
Phase2a(b, v) ==
  /\ ~ \E m \in msgs : m.type = "2a" /\ m.bal = b
  /\ \E Q \in Quorum :
       LET Q1b == {m \in msgs : m.type = "1b" /\ m.acc \in Q /\ m.bal = b}
           Q1bv == {m \in Q1b : m.mbal >= 0}
       IN /\ \A a \in Q : \E m \in Q1b : m.acc = a
          /\ \/ Q1bv = {}
             \/ \E m \in Q1bv : /\ m.mval = v
                                /\ \A mm \in Q1bv : m.mbal >= mm.mbal
  /\ Send([type |-> "2a", bal |-> b, val |-> v])
  /\ UNCHANGED <<maxBal, maxVBal, maxVal>>

Phase2b(a) == \E m \in msgs :
                /\ m.type = "2a"
                /\ m.bal >= maxBal[a]
                /\ maxBal' = [maxBal EXCEPT ![a] = m.bal]
                /\ maxVBal' = [maxVBal EXCEPT ![a] = m.bal]
                /\ maxVal' = [maxVal EXCEPT ![a] = m.val]
                /\ Send([type |-> "2b", acc |-> a, bal |-> m.bal, val |-> m.val])

Next == \/ \E b \in Ballot : Phase1a(b) \/ \E v \in Value : Phase2a(b, v)
        \/ \E a \in Acceptor : Phase1b(a) \/ Phase2b(a)

Spec == Init /\ [][Next]_vars

votes == [a \in Acceptor |->
            {<<m.bal, m.val>> : m \in {mm \in msgs : mm.type = "2b" /\ mm.acc = a}}]
ChosenAt(b, v) == \E Q \in Quorum : \A a \in Q : <<b, v>> \in votes[a]
chosen == {v \in Value : \E b \in Ballot : ChosenAt(b, v)}
Agreement == \A v, w \in chosen : v = w

(* Acceptors are interchangeable (spec/paxos.py's canonical()). *)
Symmetry == Permutations(Acceptor)
==============================================================================
