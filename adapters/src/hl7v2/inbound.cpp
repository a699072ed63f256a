#include "caduceus/adapters/hl7v2/inbound.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <optional>
#include <vector>

#include "caduceus/adapters/hl7v2/ack.hpp"
#include "caduceus/adapters/hl7v2/mapping.hpp"
#include "caduceus/adapters/hl7v2/message.hpp"
#include "caduceus/resources/custom_search.hpp"
#include "caduceus/resources/search_query.hpp"
#include "writer.hpp"

namespace caduceus::adapters::hl7v2 {

using fhir::ErrorKind;
using fhir::Result;
using resources::InboundMessageRecord;
using resources::Transaction;

struct InboundProcessor::Context {
  std::string raw;
  Send send;
  Done done;
  std::optional<Message> message;
  AckTarget target;
  bool enhanced = false;
  std::string accept_ack = "AL", application_ack = "AL";  // MSH-15, MSH-16 in enhanced mode
  InboundMessageRecord record;                            // the key fields and raw; status and ack set below
  std::string code;                                       // the application's answer: AA, AE, AR
  std::vector<Problem> problems;
  std::vector<Problem> warnings;  // sent as ERR segments of severity W with an AA
  Mapping mapping;
  std::shared_ptr<const resources::SearchParameterRegistry> registry;  // for the conditional writes
  PreparedMapping prepared;  // the mapping's bodies and index values, made before the write job (writer.hpp)

  // Filled by the write jobs (each run starts afresh).
  std::optional<InboundMessageRecord> duplicate;
  std::int64_t id = 0;
};

namespace {

// Why a message over the frame cap is rejected (its stored raw is only the start: never processed).
constexpr std::string_view kOversize = "the message is larger than the frame size cap";

constexpr std::string_view kProcessed =
    "ADT^A01, A02, A03, A04, A05, A08, A11, A13, A31, A40, ORU^R01, ORM^O01, OML^O21, RDE^O11, SIU^S12, S13, S14, "
    "S15, S26";

// Inside a write job: stores `rec` stamped with the transaction's time and returns it with its id; nullopt when a
// message with the same sender and control id (MSH-3, MSH-4, MSH-10) is stored already: it is then `duplicate`,
// whose stored acknowledgement answers. (`duplicate` is reset first: a job may run twice.)
Result<std::optional<InboundMessageRecord>> insert_unless_duplicate(Transaction& txn, resources::TenantId tenant,
                                                                    InboundMessageRecord rec,
                                                                    std::optional<InboundMessageRecord>& duplicate) {
  duplicate.reset();
  rec.received_ms = rec.updated_ms = txn.now_ms();
  // The insert looks for the sender and control id itself (kConflict when stored already): only a duplicate
  // costs a second look, for its stored acknowledgement.
  auto id = txn.insert_inbound_message(tenant, rec);
  if (!id && id.error().kind == ErrorKind::kConflict && !rec.control_id.empty()) {
    auto dup = txn.find_inbound_message(tenant, rec.sending_application, rec.sending_facility, rec.control_id);
    if (!dup) return std::unexpected(dup.error());
    if (*dup) {
      duplicate = std::move(*dup);
      return std::optional<InboundMessageRecord>{};
    }
  }
  if (!id) return std::unexpected(id.error());
  rec.id = *id;
  return std::optional<InboundMessageRecord>{std::move(rec)};
}

// Whether an acknowledgement condition (table 0155: AL, NE, ER, SU) asks for an answer with this code.
bool wanted(std::string_view condition, std::string_view code) {
  bool success = code == "AA" || code == "CA";
  if (condition == "NE") return false;
  if (condition == "ER") return !success;
  if (condition == "SU") return success;
  return true;  // AL, and anything else: never silence
}

Problem problem_of(const fhir::Error& e) {
  std::string text;
  for (const fhir::Issue& i : e.issues)
    text += (text.empty() ? "" : "; ") + i.diagnostics + (i.expression.empty() ? "" : " (" + i.expression + ")");
  return Problem{ErrorCode::kApplicationInternal, Location{}, text, false};
}

std::string problems_text(const std::vector<Problem>& problems) {
  std::string text;
  for (const Problem& p : problems) {
    if (p.warning) continue;
    std::string where = p.where.text();
    text += (text.empty() ? "" : "; ") + (where.empty() ? "" : where + ": ") + p.message;
  }
  return text;
}

}  // namespace

InboundProcessor::InboundProcessor(resources::Repository& repository, const resources::ActiveSearchParameters* search,
                                   InboundOptions options)
    : repository_(repository), search_(search), options_(options) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch());
  char buf[32];
  std::snprintf(buf, sizeof buf, "C%llX", static_cast<unsigned long long>(ms.count()));
  prefix_ = buf;
}

std::string InboundProcessor::next_control_id() {
  char buf[24];
  std::snprintf(buf, sizeof buf, ".%llX", static_cast<unsigned long long>(++counter_));
  return prefix_ + buf;
}

std::string InboundProcessor::timestamp() {
  std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d%H%M%S+0000", &tm);
  return buf;
}

void InboundProcessor::handle(std::string raw, Send send, Done done, bool oversize) {
  auto ctx = std::make_shared<Context>();
  ctx->send = std::move(send);
  ++received_;
  // Counted by its outcome when it is answered. (The context holds this function: a plain pointer back to it.)
  ctx->done = [this, c = ctx.get(), done = std::move(done)] {
    (c->duplicate ? duplicates_ : c->code == "AR" ? rejected_ : c->code == "AE" ? errors_ : processed_)++;
    done();
  };
  ctx->raw = std::move(raw);
  classify(*ctx, oversize);
  if (!ctx->code.empty()) return store_answer(ctx);
  process(ctx);
}

// Reads ctx.raw and decides what becomes of it: code AR (not accepted) or AE (it cannot be processed) with the
// problems saying why, or code empty and the mapping to write. Sets the acknowledgement's target and mode, and the
// record's key fields.
void InboundProcessor::classify(Context& c, bool oversize) const {
  Context* ctx = &c;
  ctx->record.raw = ctx->raw;
  ctx->record.status = "received";

  auto reject = [&](Problem p) {
    ctx->code = "AR";
    ctx->problems.push_back(std::move(p));
  };
  if (oversize) {
    ctx->target = AckTarget::of_raw(ctx->raw);
    Location l;
    reject(Problem{ErrorCode::kApplicationInternal, l,
                   std::string(kOversize) + " (only its first " + std::to_string(ctx->raw.size()) + " bytes are kept)",
                   false});
    return;
  }
  auto parsed = parse(ctx->raw);
  if (!parsed) {
    ctx->target = AckTarget::of_raw(ctx->raw);
    reject(parsed.error());
    return;
  }
  ctx->message = std::move(*parsed);
  ctx->message->time_zone = options_.time_zone;
  const Message& m = *ctx->message;
  ctx->target = AckTarget::of(m);
  ctx->record.sending_application = m.sending_application;
  ctx->record.sending_facility = m.sending_facility;
  ctx->record.control_id = m.control_id;
  ctx->record.message_type = std::string(m.msh().raw(9));
  ctx->enhanced = !m.accept_ack.empty() || !m.application_ack.empty();
  if (ctx->enhanced) {
    if (!m.accept_ack.empty()) ctx->accept_ack = m.accept_ack;
    if (!m.application_ack.empty()) ctx->application_ack = m.application_ack;
  }

  // Acceptance: what the header says must be something we take.
  const Segment& h = m.msh();
  if (m.type.empty())
    return reject(Problem{ErrorCode::kRequiredFieldMissing, h.at(9), "MSH-9 (message type) is empty", false});
  if (m.control_id.empty())
    return reject(Problem{ErrorCode::kRequiredFieldMissing, h.at(10), "MSH-10 (message control id) is empty", false});
  if (m.processing_id != "P" && m.processing_id != "T" && m.processing_id != "D")
    return reject(Problem{ErrorCode::kUnsupportedProcessingId, h.at(11),
                          "processing id '" + m.processing_id + "' is not supported (P, T or D)", false});
  if (!m.version.starts_with("2."))
    return reject(Problem{ErrorCode::kUnsupportedVersionId, h.at(12),
                          "version '" + m.version + "' is not supported (2.x)", false});
  MessageMapper mapper = find_mapper(m.type, m.trigger);
  if (mapper == nullptr) {
    if (type_supported(m.type))
      return reject(Problem{
          ErrorCode::kUnsupportedEventCode, h.at(9, 0, 2),
          "event " + m.type + "^" + m.trigger + " is not supported yet (processed: " + std::string(kProcessed) + ")",
          false});
    return reject(Problem{ErrorCode::kUnsupportedMessageType, h.at(9, 0, 1),
                          "message type " + m.type + (m.trigger.empty() ? "" : "^" + m.trigger) +
                              " is not supported yet (processed: " + std::string(kProcessed) + ")",
                          false});
  }

  // Content: the structure (segments out of place), then the mapping. Warnings go with the answer.
  for (const Problem& p : m.problems) (p.warning ? ctx->warnings : ctx->problems).push_back(p);
  if (ctx->problems.empty()) {
    ctx->mapping = mapper(m);
    for (const Problem& p : ctx->mapping.problems) (p.warning ? ctx->warnings : ctx->problems).push_back(p);
  }
  if (ctx->problems.empty() && !ctx->mapping.resources.empty()) {
    ctx->registry = search_ != nullptr ? search_->search() : nullptr;
    if (ctx->registry == nullptr)
      ctx->problems.push_back(Problem{ErrorCode::kApplicationInternal, Location{},
                                      "the server runs without the search index (--search-index false): "
                                      "resources cannot be matched by identifier",
                                      false});
  }
  if (!ctx->problems.empty()) ctx->code = "AE";
}

// Stores the message with its final status and acknowledgement (one transaction), then sends what it owes; a
// duplicate is answered with its stored acknowledgement.
void InboundProcessor::store_answer(std::shared_ptr<Context> ctx) {
  bool rejected = ctx->code == "AR";
  ctx->record.status = rejected ? "rejected" : ctx->code == "AE" ? "error" : "processed";
  ctx->record.error = problems_text(ctx->problems);
  // What goes out, in order: enhanced mode answers a rejection with CR alone, anything else with CA and then
  // the application acknowledgement.
  std::vector<std::string> acks;
  std::string last;
  if (ctx->enhanced) {
    if (rejected) {
      last = build_ack(ctx->target, "CR", next_control_id(), timestamp(), ctx->problems);
      if (wanted(ctx->accept_ack, "CR")) acks.push_back(last);
    } else {
      std::string ca = build_ack(ctx->target, "CA", next_control_id(), timestamp(), {});
      if (wanted(ctx->accept_ack, "CA")) acks.push_back(ca);
      last = build_ack(ctx->target, ctx->code, next_control_id(), timestamp(), ctx->problems);
      if (wanted(ctx->application_ack, ctx->code)) acks.push_back(last);
    }
  } else {
    last = build_ack(ctx->target, ctx->code, next_control_id(), timestamp(), ctx->problems);
    acks.push_back(last);
  }
  ctx->record.ack = last;
  auto tenant = options_.tenant;
  repository_.store().write_async(
      [ctx, tenant](Transaction& txn) -> Result<void> {
        auto stored = insert_unless_duplicate(txn, tenant, ctx->record, ctx->duplicate);
        if (!stored) return std::unexpected(stored.error());
        if (*stored) ctx->id = (*stored)->id;
        return {};
      },
      [this, ctx, acks = std::move(acks)](Result<void> r) {
        if (!r) {
          // Not stored: a negative answer that asks for the message again.
          std::vector<Problem> p{problem_of(r.error())};
          p.front().message = "the message could not be stored; send it again (" + p.front().message + ")";
          ctx->code = "AE";
          ctx->send(build_ack(ctx->target, ctx->enhanced ? "CE" : "AE", next_control_id(), timestamp(), p));
        } else if (ctx->duplicate) {
          if (!ctx->duplicate->ack.empty()) ctx->send(ctx->duplicate->ack);
        } else {
          for (const std::string& a : acks) ctx->send(a);
        }
        ctx->done();
      });
}

void InboundProcessor::process(std::shared_ptr<Context> ctx) {
  auto tenant = options_.tenant;
  // Here, not on the store's single writer thread: what the job can use ready-made if its matches are as predicted.
  if (!ctx->mapping.resources.empty()) ctx->prepared = prepare_mapping(repository_, ctx->mapping);
  // The resources of the message, written in the caller's transaction; their version references.
  // The resources of the message and their Provenance, written in the caller's transaction; their version
  // references. `stored`: the message's row (its id is the Provenance's entity).
  auto write_resources = [this, ctx, tenant](Transaction& txn,
                                             const InboundMessageRecord& stored) -> Result<std::vector<std::string>> {
    if (ctx->mapping.resources.empty()) return std::vector<std::string>{};
    return write_mapping(repository_, txn, tenant, ctx->mapping, ctx->registry, stored, false, &ctx->prepared);
  };
  // A processing failure (after the message could be read): stored with status error and answered AE.
  auto failed = [this, ctx, tenant](const fhir::Error& e, bool stored) {
    ctx->problems = {problem_of(e)};
    ctx->code = "AE";
    if (!stored) return store_answer(ctx);
    // (enhanced mode: the message is stored already, its CA sent; only the application answer is left)
    std::string ack = build_ack(ctx->target, "AE", next_control_id(), timestamp(), ctx->problems);
    repository_.store().write_async(
        [ctx, tenant, ack](Transaction& txn) -> Result<void> {
          InboundMessageRecord rec = ctx->record;
          rec.id = ctx->id;
          rec.status = "error";
          rec.ack = ack;
          rec.error = problems_text(ctx->problems);
          rec.updated_ms = txn.now_ms();
          return txn.update_inbound_message(tenant, rec);
        },
        [ctx, ack](Result<void>) {
          if (wanted(ctx->application_ack, "AE")) ctx->send(ack);
          ctx->done();
        });
  };

  if (!ctx->enhanced) {
    std::string ack = build_ack(ctx->target, "AA", next_control_id(), timestamp(), ctx->warnings);
    repository_.store().write_async(
        [ctx, tenant, ack, write_resources](Transaction& txn) -> Result<void> {
          auto stored = insert_unless_duplicate(txn, tenant, ctx->record, ctx->duplicate);
          if (!stored) return std::unexpected(stored.error());
          if (!*stored) return {};
          auto written = write_resources(txn, **stored);
          if (!written) return std::unexpected(written.error());
          InboundMessageRecord& rec = **stored;
          rec.status = "processed";
          rec.ack = ack;
          rec.resources = std::move(*written);
          return txn.update_inbound_message(tenant, rec);
        },
        [this, ctx, ack, failed](Result<void> r) {
          if (!r) {
            if (r.error().kind == ErrorKind::kUnavailable) {
              std::vector<Problem> p{problem_of(r.error())};
              p.front().message = "the message could not be stored; send it again (" + p.front().message + ")";
              ctx->code = "AE";
              ctx->send(build_ack(ctx->target, "AE", next_control_id(), timestamp(), p));
              return ctx->done();
            }
            return failed(r.error(), false);
          }
          ctx->send(ctx->duplicate ? ctx->duplicate->ack : ack);
          ctx->done();
        });
    return;
  }

  // Enhanced mode: stored first (CA), then processed.
  std::string ca = build_ack(ctx->target, "CA", next_control_id(), timestamp(), {});
  repository_.store().write_async(
      [ctx, tenant, ca](Transaction& txn) -> Result<void> {
        InboundMessageRecord rec = ctx->record;
        rec.ack = ca;
        auto stored = insert_unless_duplicate(txn, tenant, std::move(rec), ctx->duplicate);
        if (!stored) return std::unexpected(stored.error());
        if (*stored) ctx->id = (*stored)->id;
        return {};
      },
      [this, ctx, ca, tenant, write_resources, failed](Result<void> r) {
        if (!r) {
          std::vector<Problem> p{problem_of(r.error())};
          p.front().message = "the message could not be stored; send it again (" + p.front().message + ")";
          ctx->code = "AE";
          if (wanted(ctx->accept_ack, "CE")) ctx->send(build_ack(ctx->target, "CE", next_control_id(), timestamp(), p));
          return ctx->done();
        }
        if (ctx->duplicate) {
          if (!ctx->duplicate->ack.empty()) ctx->send(ctx->duplicate->ack);
          return ctx->done();
        }
        if (wanted(ctx->accept_ack, "CA")) ctx->send(ca);
        std::string aa = build_ack(ctx->target, "AA", next_control_id(), timestamp(), ctx->warnings);
        repository_.store().write_async(
            [ctx, tenant, aa, write_resources](Transaction& txn) -> Result<void> {
              InboundMessageRecord rec = ctx->record;
              rec.id = ctx->id;
              auto written = write_resources(txn, rec);
              if (!written) return std::unexpected(written.error());
              rec.status = "processed";
              rec.ack = aa;
              rec.resources = std::move(*written);
              rec.updated_ms = txn.now_ms();
              return txn.update_inbound_message(tenant, rec);
            },
            [ctx, aa, failed](Result<void> r2) {
              if (!r2) return failed(r2.error(), true);
              if (wanted(ctx->application_ack, "AA")) ctx->send(aa);
              ctx->done();
            });
      });
}

void InboundProcessor::replay(std::int64_t id, ReplayDone done) {
  auto tenant = options_.tenant;
  auto found = std::make_shared<std::optional<InboundMessageRecord>>();
  repository_.store().write_async(
      [found, tenant, id](Transaction& txn) -> Result<void> {
        auto r = txn.inbound_message(tenant, id);
        if (!r) return std::unexpected(r.error());
        *found = std::move(*r);
        return {};
      },
      [this, found, id, done = std::move(done)](Result<void> r) mutable {
        if (!r) return done(std::unexpected(r.error()));
        if (!*found)
          return done(fhir::fail(ErrorKind::kNotFound, "not-found", "no inbound HL7 v2 message " + std::to_string(id)));
        reprocess(std::move(**found), std::move(done));
      });
}

void InboundProcessor::reprocess(InboundMessageRecord stored, ReplayDone done) {
  auto ctx = std::make_shared<Context>();
  ctx->raw = stored.raw;
  // A message cut at the frame cap keeps only its start: processing what is left could lose the rest silently.
  bool cut = stored.status == "rejected" && stored.error.starts_with(kOversize);
  classify(*ctx, cut);
  std::string code = ctx->code.empty() ? "AA" : ctx->code;
  std::string ack = build_ack(ctx->target, ctx->enhanced && code == "AR" ? "CR" : code, next_control_id(), timestamp(),
                              code == "AA" ? ctx->warnings : ctx->problems);
  auto tenant = options_.tenant;
  auto before = std::make_shared<InboundMessageRecord>(std::move(stored));
  auto after = std::make_shared<InboundMessageRecord>();
  // The message as stored now, counted as replayed once more, with the outcome `status`.
  auto replayed = [tenant, before](Transaction& txn, std::string status, std::string ack,
                                   std::string error) -> Result<InboundMessageRecord> {
    auto current = txn.inbound_message(tenant, before->id);
    if (!current) return std::unexpected(current.error());
    if (!*current)
      return fhir::fail(ErrorKind::kNotFound, "not-found", "no inbound HL7 v2 message " + std::to_string(before->id));
    InboundMessageRecord rec = std::move(**current);
    rec.status = std::move(status);
    rec.ack = std::move(ack);
    rec.error = std::move(error);
    rec.replays += 1;
    rec.replayed_ms = rec.updated_ms = txn.now_ms();
    return rec;
  };
  repository_.store().write_async(
      [this, ctx, tenant, code, ack, replayed, after](Transaction& txn) -> Result<void> {
        std::string status = code == "AR" ? "rejected" : code == "AE" ? "error" : "processed";
        auto rec = replayed(txn, status, ack, code == "AA" ? "" : problems_text(ctx->problems));
        if (!rec) return std::unexpected(rec.error());
        if (code == "AA") {
          // (what it produced before stays listed when it fails now: those versions exist)
          auto written = ctx->mapping.resources.empty()
                             ? Result<std::vector<std::string>>(std::vector<std::string>{})
                             : write_mapping(repository_, txn, tenant, ctx->mapping, ctx->registry, *rec, true);
          if (!written) return std::unexpected(written.error());
          rec->resources = std::move(*written);
        }
        if (auto u = txn.update_inbound_message(tenant, *rec); !u) return u;
        *after = std::move(*rec);
        return {};
      },
      [this, ctx, tenant, before, after, replayed, done = std::move(done)](Result<void> r) mutable {
        if (r) return done(Replay{*before, *after});
        if (r.error().kind == ErrorKind::kUnavailable || r.error().kind == ErrorKind::kNotFound)
          return done(std::unexpected(r.error()));
        // The resources could not be written: stored as an error, with the AE it would be answered now.
        std::vector<Problem> problems{problem_of(r.error())};
        std::string ack = build_ack(ctx->target, "AE", next_control_id(), timestamp(), problems);
        std::string error = problems_text(problems);
        repository_.store().write_async(
            [tenant, ack, error, replayed, after](Transaction& txn) -> Result<void> {
              auto rec = replayed(txn, "error", ack, error);
              if (!rec) return std::unexpected(rec.error());
              if (auto u = txn.update_inbound_message(tenant, *rec); !u) return u;
              *after = std::move(*rec);
              return {};
            },
            [before, after, done = std::move(done)](Result<void> r2) mutable {
              if (!r2) return done(std::unexpected(r2.error()));
              done(Replay{*before, *after});
            });
      });
}

std::string InboundProcessor::metrics() const {
  std::string out =
      "# HELP caduceus_hl7_inbound_received_total HL7 v2 messages received since start.\n"
      "# TYPE caduceus_hl7_inbound_received_total counter\n"
      "caduceus_hl7_inbound_received_total " +
      std::to_string(received_.load()) +
      "\n# HELP caduceus_hl7_inbound_answered_total HL7 v2 messages answered since start, by outcome.\n"
      "# TYPE caduceus_hl7_inbound_answered_total counter\n";
  for (const auto& [outcome, n] : {std::pair{"processed", &processed_}, std::pair{"error", &errors_},
                                   std::pair{"rejected", &rejected_}, std::pair{"duplicate", &duplicates_}})
    out += std::string("caduceus_hl7_inbound_answered_total{outcome=\"") + outcome + "\"} " +
           std::to_string(n->load()) + "\n";
  return out;
}

}  // namespace caduceus::adapters::hl7v2
