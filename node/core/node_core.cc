#include "node_core.h"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace starling::node {

NodeTiming NodeTimingFor(const std::string& profile) {
  NodeTiming t{kSoftStateRefresh, AgentConfig{}.health_every, VoterConfig{}.spacing};
  if (profile == "local") t = {kLocalSoftStateRefresh, kLocalHealthEvery, kLocalVoterSpacing};
  return t;
}

NodeCore::NodeCore(NodeOptions options, NodeSeams seams) : opts_(std::move(options)), seams_(std::move(seams)) {
  const NodeTiming timing = NodeTimingFor(opts_.profile);
  Clock& clock = seams_.clock;
  channels_ = std::make_unique<membership::UserChannels>(seams_.members);
  gossip_ = std::make_unique<store::MemberlistGossip>(*channels_);
  replicator_ = std::make_unique<store::Replicator>(seams_.log, *gossip_, clock, seams_.random);
  store::AttachReplicator(*replicator_, *channels_);
  if (seams_.keyring) keys_ = std::make_unique<KeyCommands>(*channels_, seams_.keyring, seams_.persist_keyring);
  lease_net_ = std::make_unique<MemberlistLeaseNet>(*channels_);
  lease_ = std::make_unique<Lease>(opts_.name, clock, seams_.random, *lease_net_, seams_.ballots,
                                   LeaseConfigFor(opts_.profile));
  channels_->On(membership::Channel::kLease,
                [l = lease_.get()](const std::string& from, ByteView data) { l->HandlePacket(from, data); });
  if (opts_.keep_voters) {
    VoterConfig vcfg;
    vcfg.reap_timeout = opts_.reap_timeout;
    vcfg.spacing = timing.voter_spacing;
    vcfg.founder = opts_.founder;
    voters_ = std::make_unique<VoterKeeper>(opts_.name, clock, seams_.members, *replicator_, *lease_, vcfg);
  }
  soft_ = std::make_unique<SoftState>(opts_.name, opts_.generation, clock, *channels_, timing.soft_state_refresh);
  soft_->AlsoTell([this] {
    const Lease::View v = lease_->view();
    std::vector<std::string> to;
    if (v.holder && *v.holder == opts_.name) return to;
    for (const std::string& name : v.holder ? std::vector<std::string>{*v.holder} : v.voters)
      if (name != opts_.name)
        if (auto addr = lease_net_->AddrOf(name)) to.push_back(*addr);
    return to;
  });
  soft_->ToldDirectly([this] {
    const Lease::View v = lease_->view();
    if (v.holder) return *v.holder == opts_.name;
    return std::find(v.voters.begin(), v.voters.end(), opts_.name) != v.voters.end();
  });
  auto roles_tag = [this] { return RolesTag(); };
  agent_ = std::make_unique<NodeAgent>(opts_.name, clock, *replicator_, *soft_, seams_.hooks, seams_.applied,
                                       roles_tag, opts_.agent);
  agent_->SetHighestBallot([l = lease_.get()] { return l->highest_ballot(); });
  agent_->SetBinary(seams_.agent_binary);
  engine_ = std::make_unique<RolloutEngine>(opts_.name, clock, seams_.members, *replicator_, *soft_, *lease_);
  if (seams_.artifact_store) {
    artifacts_ = std::make_unique<Artifacts>(opts_.name, clock, seams_.random, *channels_, *replicator_,
                                             *seams_.artifact_store, seams_.offload, roles_tag, opts_.artifacts);
    artifacts_->OnReady([a = agent_.get()] { a->Refresh(); });
    agent_->SetArtifacts(artifacts_.get());
  }
  handlers_ = std::make_unique<EventHandlers>(clock, seams_.members, std::move(seams_.event_handlers), opts_.events);
  events_ = std::make_unique<UserEvents>(*channels_, clock, [this](const UserEvent& e) {
    // A log line, so that `monitor` shows it.
    spdlog::info("user event {} at ltime {}{}: {} bytes", e.name, e.ltime, e.coalesce ? " (coalesce)" : "",
                 e.payload.size());
    handlers_->OnUser(e);
  });
  queries_ = std::make_unique<Queries>(
      *channels_, clock, seams_.random, [this](const QueryEvent& q, std::function<void(std::string)> respond) {
        spdlog::info("query {} from {} at ltime {}: {} bytes", q.name, q.origin, q.ltime, q.payload.size());
        handlers_->OnQuery(q, std::move(respond));
      });
  replicator_->OnChange([this] {
    if (voters_) voters_->Refresh();
    agent_->Refresh();
    engine_->Poke();
    if (artifacts_) artifacts_->Refresh();
  });
}

NodeCore::~NodeCore() = default;

void NodeCore::OnMemberEvent(const membership::Event& event) {
  if (event.type == membership::EventType::kReaped) soft_->Forget(event.member.name);
  handlers_->OnMember(event);
}

void NodeCore::Start() {
  replicator_->Start();
  // Quarantined for one lease period: this node may have promised or
  // accepted grants before a crash that it no longer remembers.
  lease_->Start();
  if (voters_) voters_->Start();
  soft_->Start();
  agent_->Start();
  engine_->Start();
  if (artifacts_) artifacts_->Start();
}

std::string NodeCore::RolesTag() const {
  const membership::MemberView self = seams_.members.Self();
  auto it = self.tags.find("roles");
  return it == self.tags.end() ? std::string() : it->second;
}

}  // namespace starling::node
