-------------------------------- MODULE Raft ---------------------------------
(* Raft as in spec/raft.py, for running TLC side by side with distcheck      *)
(* (benchmarks/raft_vs_tlc.py).  It mirrors that module rule by rule: the    *)
(* same variables (snake_case there, camelCase here), the same history       *)
(* variables (voterLog, elections, allLogs and the log carried by vote       *)
(* responses and append requests), the same guards, and one successor per    *)
(* rule and parameters, so that both tools count the same distinct and       *)
(* generated states and the same depth.                                      *)
(*                                                                           *)
(* Messages travel in a bag: a function from messages to positive counts     *)
(* (the standard Bags module); a message whose count reaches 0 leaves the    *)
(* bag.  The bounds are a state constraint, as spec/raft.py's within_bounds: *)
(* a successor beyond them is generated but neither kept nor explored.       *)
EXTENDS Naturals, Sequences, FiniteSets, Bags, TLC
CONSTANTS Server, Value, MaxTerm, MaxLog, MaxMsgs

Follower == "follower"
Candidate == "candidate"
Leader == "leader"
Nil == "nil"  \* votedFor of a server that has not voted in its term

VARIABLES currentTerm, role, votedFor, log, commitIndex,
          votesResponded, votesGranted, nextIndex, matchIndex, msgs,
          voterLog, elections, allLogs  \* the last three: history only
vars == <<currentTerm, role, votedFor, log, commitIndex, votesResponded,
          votesGranted, nextIndex, matchIndex, msgs, voterLog, elections, allLogs>>

----------------------------------------------------------------------------
(* Helpers *)

Min(a, b) == IF a <= b THEN a ELSE b
Max(a, b) == IF a >= b THEN a ELSE b
SetMax(S) == CHOOSE x \in S : \A y \in S : x >= y

IsQuorum(S) == 2 * Cardinality(S) > Cardinality(Server)

(* The term of a log's last entry, 0 when it is empty. *)
LastTerm(lg) == IF lg = <<>> THEN 0 ELSE lg[Len(lg)].term

(* The first n entries of lg, or all of them when it is shorter (a slice). *)
Prefix(lg, n) == SubSeq(lg, 1, Min(n, Len(lg)))

NoVoters == [p \in {} |-> <<>>]  \* an empty voterLog entry

Put(m) == msgs (+) SetToBag({m})
Take(m) == msgs (-) SetToBag({m})
(* A request answered: the response added, one copy of the request removed. *)
Answer(response, request) == (msgs (+) SetToBag({response})) (-) SetToBag({request})

----------------------------------------------------------------------------
(* Initial state *)

Init == /\ currentTerm = [i \in Server |-> 1]
        /\ role = [i \in Server |-> Follower]
        /\ votedFor = [i \in Server |-> Nil]
        /\ log = [i \in Server |-> <<>>]
        /\ commitIndex = [i \in Server |-> 0]
        /\ votesResponded = [i \in Server |-> {}]
        /\ votesGranted = [i \in Server |-> {}]
        /\ nextIndex = [i \in Server |-> [j \in Server |-> 1]]
        /\ matchIndex = [i \in Server |-> [j \in Server |-> 0]]
        /\ msgs = EmptyBag
        /\ voterLog = [i \in Server |-> NoVoters]
        /\ elections = {}
        /\ allLogs = {}

----------------------------------------------------------------------------
(* Server steps.  Each leaves allLogs to Next, which records every log of   *)
(* the state a step starts from.                                            *)

(* The server restarts from durable storage: term, vote and log survive. *)
Restart(i) ==
  /\ role' = [role EXCEPT ![i] = Follower]
  /\ votesResponded' = [votesResponded EXCEPT ![i] = {}]
  /\ votesGranted' = [votesGranted EXCEPT ![i] = {}]
  /\ voterLog' = [voterLog EXCEPT ![i] = NoVoters]
  /\ nextIndex' = [nextIndex EXCEPT ![i] = [j \in Server |-> 1]]
  /\ matchIndex' = [matchIndex EXCEPT ![i] = [j \in Server |-> 0]]
  /\ commitIndex' = [commitIndex EXCEPT ![i] = 0]
  /\ UNCHANGED <<currentTerm, votedFor, log, msgs, elections>>

(* A follower or candidate starts an election in the next term. *)
Timeout(i) ==
  /\ role[i] \in {Follower, Candidate}
  /\ role' = [role EXCEPT ![i] = Candidate]
  /\ currentTerm' = [currentTerm EXCEPT ![i] = @ + 1]
  /\ votedFor' = [votedFor EXCEPT ![i] = Nil]
  /\ votesResponded' = [votesResponded EXCEPT ![i] = {}]
  /\ votesGranted' = [votesGranted EXCEPT ![i] = {}]
  /\ voterLog' = [voterLog EXCEPT ![i] = NoVoters]
  /\ UNCHANGED <<log, commitIndex, nextIndex, matchIndex, msgs, elections>>

(* A candidate asks a peer (itself included) that has not answered yet. *)
RequestVote(i, j) ==
  /\ role[i] = Candidate
  /\ j \notin votesResponded[i]
  /\ msgs' = Put([type |-> "RequestVoteRequest", term |-> currentTerm[i],
                  lastLogTerm |-> LastTerm(log[i]), lastLogIndex |-> Len(log[i]),
                  source |-> i, dest |-> j])
  /\ UNCHANGED <<currentTerm, role, votedFor, log, commitIndex, votesResponded,
                 votesGranted, nextIndex, matchIndex, voterLog, elections>>

(* A candidate with the votes of a quorum leads; the election is recorded. *)
BecomeLeader(i) ==
  /\ role[i] = Candidate
  /\ IsQuorum(votesGranted[i])
  /\ role' = [role EXCEPT ![i] = Leader]
  /\ nextIndex' = [nextIndex EXCEPT ![i] = [j \in Server |-> Len(log[i]) + 1]]
  /\ matchIndex' = [matchIndex EXCEPT ![i] = [j \in Server |-> 0]]
  /\ elections' = elections \cup {[term |-> currentTerm[i], leader |-> i, log |-> log[i],
                                   votes |-> votesGranted[i], voterLog |-> voterLog[i]]}
  /\ UNCHANGED <<currentTerm, votedFor, log, commitIndex, votesResponded,
                 votesGranted, msgs, voterLog>>

(* A leader appends a client's value, in its own term. *)
ClientRequest(i, v) ==
  /\ role[i] = Leader
  /\ log' = [log EXCEPT ![i] = Append(@, [term |-> currentTerm[i], value |-> v])]
  /\ UNCHANGED <<currentTerm, role, votedFor, commitIndex, votesResponded,
                 votesGranted, nextIndex, matchIndex, msgs, voterLog, elections>>

(* A leader commits up to the highest index a quorum stores, when that      *)
(* entry is of its own term; otherwise its commit index stays (a step all   *)
(* the same).                                                               *)
AdvanceCommitIndex(i) ==
  /\ role[i] = Leader
  /\ LET lg == log[i]
         Holders(k) == {i} \cup {p \in Server : matchIndex[i][p] >= k}
         agreed == {k \in 1..Len(lg) : IsQuorum(Holders(k))}
         top == IF agreed = {} THEN 0 ELSE SetMax(agreed)
     IN commitIndex' = [commitIndex EXCEPT ![i] =
                          IF top > 0 /\ lg[top].term = currentTerm[i] THEN top ELSE @]
  /\ UNCHANGED <<currentTerm, role, votedFor, log, votesResponded, votesGranted,
                 nextIndex, matchIndex, msgs, voterLog, elections>>

(* A leader sends a peer the entry at the peer's next index (none when its  *)
(* log ends before it), with the entry before it for the consistency check. *)
AppendEntries(i, j) ==
  /\ i /= j
  /\ role[i] = Leader
  /\ LET lg == log[i]
         nxt == nextIndex[i][j]
         prev == nxt - 1
         last == Min(Len(lg), nxt)
     IN msgs' = Put([type |-> "AppendEntriesRequest", term |-> currentTerm[i],
                     prevLogIndex |-> prev,
                     prevLogTerm |-> IF 0 < prev /\ prev <= Len(lg) THEN lg[prev].term ELSE 0,
                     entries |-> SubSeq(lg, nxt, last), log |-> lg,
                     commitIndex |-> Min(commitIndex[i], last),
                     source |-> i, dest |-> j])
  /\ UNCHANGED <<currentTerm, role, votedFor, log, commitIndex, votesResponded,
                 votesGranted, nextIndex, matchIndex, voterLog, elections>>

----------------------------------------------------------------------------
(* Receiving a message m at its destination i, from j. *)

(* A newer term is adopted first; the message stays, to be handled in it. *)
UpdateTerm(i, m) ==
  /\ currentTerm' = [currentTerm EXCEPT ![i] = m.term]
  /\ role' = [role EXCEPT ![i] = Follower]
  /\ votedFor' = [votedFor EXCEPT ![i] = Nil]
  /\ UNCHANGED <<log, commitIndex, votesResponded, votesGranted, nextIndex,
                 matchIndex, msgs, voterLog, elections>>

(* The vote goes to a candidate of this term whose log is at least as up to *)
(* date, unless the server voted for another in this term.                  *)
GrantsVote(i, j, m) ==
  LET lg == log[i]
      logOk == \/ m.lastLogTerm > LastTerm(lg)
               \/ /\ m.lastLogTerm = LastTerm(lg)
                  /\ m.lastLogIndex >= Len(lg)
  IN /\ m.term = currentTerm[i]
     /\ logOk
     /\ votedFor[i] \in {Nil, j}

HandleRequestVoteRequest(i, j, m) ==
  LET grant == GrantsVote(i, j, m)
  IN /\ votedFor' = IF grant THEN [votedFor EXCEPT ![i] = j] ELSE votedFor
     /\ msgs' = Answer([type |-> "RequestVoteResponse", term |-> currentTerm[i],
                        granted |-> grant, log |-> log[i], source |-> i, dest |-> j], m)
     /\ UNCHANGED <<currentTerm, role, log, commitIndex, votesResponded, votesGranted,
                    nextIndex, matchIndex, voterLog, elections>>

(* The answer is tallied whatever i's role now is (such tallies go unread). *)
HandleRequestVoteResponse(i, j, m) ==
  /\ votesResponded' = [votesResponded EXCEPT ![i] = @ \cup {j}]
  /\ IF m.granted
       THEN /\ votesGranted' = [votesGranted EXCEPT ![i] = @ \cup {j}]
            /\ voterLog' = [voterLog EXCEPT ![i] = (j :> m.log) @@ @]
       ELSE UNCHANGED <<votesGranted, voterLog>>
  /\ msgs' = Take(m)
  /\ UNCHANGED <<currentTerm, role, votedFor, log, commitIndex, nextIndex,
                 matchIndex, elections>>

(* A follower whose log matches up to prevLogIndex: already done (reply and *)
(* take the commit index), a conflicting entry (remove the last one; the    *)
(* request stays) or the next entry (append it; the request stays).        *)
AcceptAppendEntries(i, j, m) ==
  LET lg == log[i]
      idx == m.prevLogIndex + 1
  IN IF \/ m.entries = <<>>
        \/ (Len(lg) >= idx /\ lg[idx].term = m.entries[1].term)
       THEN /\ commitIndex' = [commitIndex EXCEPT ![i] = m.commitIndex]
            /\ msgs' = Answer([type |-> "AppendEntriesResponse", term |-> currentTerm[i],
                               success |-> TRUE, matchIndex |-> m.prevLogIndex + Len(m.entries),
                               source |-> i, dest |-> j], m)
            /\ UNCHANGED log
       ELSE /\ log' = [log EXCEPT ![i] = IF Len(lg) >= idx THEN SubSeq(lg, 1, Len(lg) - 1)
                                                          ELSE Append(lg, m.entries[1])]
            /\ UNCHANGED <<commitIndex, msgs>>

(* Written as IF-THEN-ELSE, not as disjunctions: TLC makes one successor per *)
(* true disjunct of an action, and Python's spec makes one per rule.          *)
HandleAppendEntriesRequest(i, j, m) ==
  LET lg == log[i]
      logOk == IF m.prevLogIndex = 0 THEN TRUE
               ELSE m.prevLogIndex <= Len(lg) /\ m.prevLogTerm = lg[m.prevLogIndex].term
  IN /\ IF m.term < currentTerm[i] \/ (role[i] = Follower /\ ~logOk)
          THEN /\ msgs' = Answer([type |-> "AppendEntriesResponse", term |-> currentTerm[i],
                                  success |-> FALSE, matchIndex |-> 0, source |-> i, dest |-> j], m)
               /\ UNCHANGED <<role, log, commitIndex>>
        ELSE IF role[i] = Candidate  \* a leader of this term exists
          THEN /\ role' = [role EXCEPT ![i] = Follower]
               /\ UNCHANGED <<log, commitIndex, msgs>>
        ELSE /\ role[i] = Follower  \* a leader never receives a request of its own term
             /\ AcceptAppendEntries(i, j, m)
             /\ UNCHANGED role
     /\ UNCHANGED <<currentTerm, votedFor, votesResponded, votesGranted, nextIndex,
                    matchIndex, voterLog, elections>>

HandleAppendEntriesResponse(i, j, m) ==
  /\ IF m.success
       THEN /\ nextIndex' = [nextIndex EXCEPT ![i][j] = m.matchIndex + 1]
            /\ matchIndex' = [matchIndex EXCEPT ![i][j] = m.matchIndex]
       ELSE /\ nextIndex' = [nextIndex EXCEPT ![i][j] = Max(@ - 1, 1)]
            /\ UNCHANGED matchIndex
  /\ msgs' = Take(m)
  /\ UNCHANGED <<currentTerm, role, votedFor, log, commitIndex, votesResponded,
                 votesGranted, voterLog, elections>>

(* A response of an older term is dropped unread. *)
DropStaleResponse(m) ==
  /\ msgs' = Take(m)
  /\ UNCHANGED <<currentTerm, role, votedFor, log, commitIndex, votesResponded,
                 votesGranted, nextIndex, matchIndex, voterLog, elections>>

Receive(m) ==
  LET i == m.dest
      j == m.source
  IN IF m.term > currentTerm[i] THEN UpdateTerm(i, m)
     ELSE IF m.type = "RequestVoteRequest" THEN HandleRequestVoteRequest(i, j, m)
     ELSE IF m.type = "AppendEntriesRequest" THEN HandleAppendEntriesRequest(i, j, m)
     ELSE IF m.term < currentTerm[i] THEN DropStaleResponse(m)
     ELSE IF m.type = "RequestVoteResponse" THEN HandleRequestVoteResponse(i, j, m)
     ELSE HandleAppendEntriesResponse(i, j, m)

----------------------------------------------------------------------------
(* The network *)

DuplicateMessage(m) ==
  /\ msgs' = Put(m)
  /\ UNCHANGED <<currentTerm, role, votedFor, log, commitIndex, votesResponded,
                 votesGranted, nextIndex, matchIndex, voterLog, elections>>

DropMessage(m) ==
  /\ msgs' = Take(m)
  /\ UNCHANGED <<currentTerm, role, votedFor, log, commitIndex, votesResponded,
                 votesGranted, nextIndex, matchIndex, voterLog, elections>>

----------------------------------------------------------------------------

(* spec/raft.py's next(), in its order; every step records the logs of the *)
(* state it starts from in allLogs.                                        *)
Next ==
  /\ \/ \E i \in Server : Timeout(i) \/ Restart(i)
     \/ \E i, j \in Server : RequestVote(i, j)
     \/ \E i \in Server : BecomeLeader(i)
     \/ \E i \in Server, v \in Value : ClientRequest(i, v)
     \/ \E i \in Server : AdvanceCommitIndex(i)
     \/ \E i, j \in Server : AppendEntries(i, j)
     \/ \E m \in BagToSet(msgs) : Receive(m) \/ DuplicateMessage(m) \/ DropMessage(m)
  /\ allLogs' = allLogs \cup {log[i] : i \in Server}

Spec == Init /\ [][Next]_vars

(* The bounds (spec/raft.py's within_bounds), as a CONSTRAINT. *)
Bounds == /\ \A i \in Server : currentTerm[i] <= MaxTerm
          /\ \A i \in Server : Len(log[i]) <= MaxLog
          /\ BagCardinality(msgs) <= MaxMsgs

----------------------------------------------------------------------------
(* Invariants, as spec/raft.py's *)

Entries == [term : Nat \ {0}, value : Value]

TypeOK ==
  /\ currentTerm \in [Server -> Nat \ {0}]
  /\ role \in [Server -> {Follower, Candidate, Leader}]
  /\ votedFor \in [Server -> Server \cup {Nil}]
  /\ \A i \in Server : \A k \in 1..Len(log[i]) : log[i][k] \in Entries
  /\ commitIndex \in [Server -> Nat]
  /\ \A i \in Server : votesGranted[i] \subseteq votesResponded[i]
                       /\ votesResponded[i] \subseteq Server
  /\ \A i, j \in Server : nextIndex[i][j] >= 1 /\ matchIndex[i][j] >= 0
  /\ \A m \in BagToSet(msgs) : m.source \in Server /\ m.dest \in Server

(* At most one leader is elected in any term. *)
ElectionSafety == \A e, f \in elections : e.term = f.term => e.leader = f.leader

(* Two logs with an entry of the same index and term agree up to it. *)
LogMatching ==
  \A i, j \in Server :
    \A k \in 1..Min(Len(log[i]), Len(log[j])) :
      log[i][k].term = log[j][k].term => SubSeq(log[i], 1, k) = SubSeq(log[j], 1, k)

(* A leader's log holds every entry committed in an earlier or its own term. *)
LeaderCompleteness ==
  \A l \in Server : role[l] = Leader =>
    \A i \in Server : (currentTerm[i] <= currentTerm[l] /\ commitIndex[i] > 0) =>
      Prefix(log[l], commitIndex[i]) = Prefix(log[i], commitIndex[i])

(* Committed entries exist and agree at every index. *)
StateMachineSafety ==
  /\ \A i \in Server : commitIndex[i] <= Len(log[i])
  /\ \A i, j \in Server :
       LET k == Min(commitIndex[i], commitIndex[j])
       IN SubSeq(log[i], 1, k) = SubSeq(log[j], 1, k)

(* A step property: a leader never removes or changes an entry while it leads. *)
LeaderAppendOnlyStep ==
  \A i \in Server :
    (role[i] = Leader /\ role'[i] = Leader /\ currentTerm'[i] = currentTerm[i])
      => Prefix(log'[i], Len(log[i])) = log[i]
LeaderAppendOnly == [][LeaderAppendOnlyStep]_vars
==============================================================================
