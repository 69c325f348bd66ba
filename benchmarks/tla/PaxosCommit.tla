---------------------------- MODULE PaxosCommit ----------------------------
(* Gray and Lamport's Paxos Commit, as in spec/paxoscommit.py, for running TLC *)
(* side by side with distcheck (benchmarks/paxoscommit_vs_tlc.py).  Each RM's   *)
(* prepared/aborted choice is the value of a Paxos instance among acceptors;   *)
(* ballot 0 belongs to the RM itself, higher ballots to leaders.              *)
EXTENDS Integers, FiniteSets, TLC
CONSTANTS RM, Acceptor, Ballot
ASSUME 0 \in Ballot

Majority == {MS \in SUBSET Acceptor : Cardinality(MS) = Cardinality(Acceptor) \div 2 + 1}  \* minimal majorities, as in the published model

VARIABLES rmState, aState, msgs
vars == <<rmState, aState, msgs>>

Send(m) == msgs' = msgs \cup {m}

Init == /\ rmState = [rm \in RM |-> "working"]
        /\ aState = [ins \in RM |-> [ac \in Acceptor |-> [mbal |-> 0, bal |-> -1, val |-> "none"]]]
        /\ msgs = {}

RMPrepare(rm) == /\ rmState[rm] = "working"
                 /\ rmState' = [rmState EXCEPT ![rm] = "prepared"]
                 /\ Send([type |-> "phase2a", ins |-> rm, bal |-> 0, val |-> "prepared"])
                 /\ UNCHANGED aState

RMChooseToAbort(rm) == /\ rmState[rm] = "working"
                       /\ rmState' = [rmState EXCEPT ![rm] = "aborted"]
                       /\ Send([type |-> "phase2a", ins |-> rm, bal |-> 0, val |-> "aborted"])
                       /\ UNCHANGED aState

RMRcvCommitMsg(rm) == /\ [type |-> "Commit"] \in msgs
                      /\ rmState' = [rmState EXCEPT ![rm] = "committed"]
                      /\ UNCHANGED <<aState, msgs>>

RMRcvAbortMsg(rm) == /\ [type |-> "Abort"] \in msgs
                     /\ rmState' = [rmState EXCEPT ![rm] = "aborted"]
                     /\ UNCHANGED <<aState, msgs>>

Phase1a(bal, rm) == /\ Send([type |-> "phase1a", ins |-> rm, bal |-> bal])
                    /\ UNCHANGED <<rmState, aState>>

Phase2a(bal, rm) ==
  /\ ~ \E m \in msgs : m.type = "phase2a" /\ m.bal = bal /\ m.ins = rm
  /\ \E MS \in Majority :
       LET mset == {m \in msgs : /\ m.type = "phase1b" /\ m.ins = rm
                                 /\ m.mbal = bal /\ m.acc \in MS}
           maxbal == CHOOSE b \in {m.bal : m \in mset} : \A m \in mset : m.bal =< b
           val == IF maxbal = -1 THEN "aborted"
                  ELSE (CHOOSE m \in mset : m.bal = maxbal).val
       IN  /\ \A ac \in MS : \E m \in mset : m.acc = ac
           /\ Send([type |-> "phase2a", ins |-> rm, bal |-> bal, val |-> val])
  /\ UNCHANGED <<rmState, aState>>

Decided(rm, v) == \E b \in Ballot, MS \in Majority :
                    \A ac \in MS : [type |-> "phase2b", ins |-> rm, bal |-> b, val |-> v, acc |-> ac] \in msgs

Decide == /\ \/ /\ \A rm \in RM : Decided(rm, "prepared")
                /\ Send([type |-> "Commit"])
             \/ /\ \E rm \in RM : Decided(rm, "aborted")
                /\ Send([type |-> "Abort"])
          /\ UNCHANGED <<rmState, aState>>

Phase1b(acc) ==
  \E m \in msgs :
    /\ m.type = "phase1a"
    /\ aState[m.ins][acc].mbal < m.bal
    /\ aState' = [aState EXCEPT ![m.ins][acc].mbal = m.bal]
    /\ Send([type |-> "phase1b", ins |-> m.ins, mbal |-> m.bal, bal |-> aState[m.ins][acc].bal,
             val |-> aState[m.ins][acc].val, acc |-> acc])
    /\ UNCHANGED rmState

Phase2b(acc) ==
  \E m \in msgs :
    /\ m.type = "phase2a"
    /\ aState[m.ins][acc].mbal =< m.bal
    /\ aState' = [aState EXCEPT ![m.ins][acc].mbal = m.bal, ![m.ins][acc].bal = m.bal,
                                ![m.ins][acc].val = m.val]
    /\ Send([type |-> "phase2b", ins |-> m.ins, bal |-> m.bal, val |-> m.val, acc |-> acc])
    /\ UNCHANGED rmState

Next == \/ \E rm \in RM : RMPrepare(rm) \/ RMChooseToAbort(rm) \/ RMRcvCommitMsg(rm) \/ RMRcvAbortMsg(rm)
        \/ \E bal \in Ballot \ {0}, rm \in RM : Phase1a(bal, rm) \/ Phase2a(bal, rm)
        \/ Decide
        \/ \E acc \in Acceptor : Phase1b(acc) \/ Phase2b(acc)

TCConsistent == \A r1, r2 \in RM : ~ /\ rmState[r1] = "aborted"
                                     /\ rmState[r2] = "committed"

AcceptorSymmetry == Permutations(Acceptor)
=============================================================================
