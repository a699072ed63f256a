#include "caduceus/adapters/hl7v2/builder.hpp"

namespace caduceus::adapters::hl7v2 {

std::string& SegmentBuilder::slot(std::size_t n) {
  if (n == 0) n = 1;
  if (fields_.size() < n) fields_.resize(n);
  return fields_[n - 1];
}

std::string SegmentBuilder::join(const std::vector<std::string>& components) const {
  std::size_t last = components.size();
  while (last > 0 && components[last - 1].empty()) --last;
  std::string out;
  for (std::size_t i = 0; i < last; ++i) {
    if (i > 0) out.push_back(enc_.component);
    out += escape(components[i], enc_);
  }
  return out;
}

SegmentBuilder& SegmentBuilder::field(std::size_t n, std::string_view text) {
  slot(n) = escape(text, enc_);
  return *this;
}

SegmentBuilder& SegmentBuilder::components(std::size_t n, const std::vector<std::string>& components) {
  slot(n) = join(components);
  return *this;
}

SegmentBuilder& SegmentBuilder::repetitions(std::size_t n, const std::vector<std::vector<std::string>>& reps) {
  std::string out;
  for (std::size_t i = 0; i < reps.size(); ++i) {
    if (i > 0) out.push_back(enc_.repetition);
    out += join(reps[i]);
  }
  slot(n) = std::move(out);
  return *this;
}

std::string SegmentBuilder::str() const {
  std::size_t last = fields_.size();
  while (last > 0 && fields_[last - 1].empty()) --last;
  std::string out = name_;
  for (std::size_t i = 0; i < last; ++i) {
    out.push_back(enc_.field);
    out += fields_[i];
  }
  return out;
}

MessageBuilder::MessageBuilder(const MessageHeader& h) {
  // MSH-1 and MSH-2 are the delimiters themselves; from MSH-3 on, fields are built (and escaped) as any other.
  SegmentBuilder msh("MSH", enc_);
  msh.field(3, h.sending_application)
      .field(4, h.sending_facility)
      .field(5, h.receiving_application)
      .field(6, h.receiving_facility)
      .field(7, h.timestamp)
      .components(9, {h.type, h.trigger, h.structure})
      .field(10, h.control_id)
      .field(11, h.processing_id)
      .field(12, h.version);
  // msh.str() is "MSH|||<MSH-3>|...": fields 1 and 2 empty. Written out here: "MSH|^~\\&|<MSH-3>|...".
  std::string rest = msh.str().substr(3);  // "|||<MSH-3>|..."
  text_ = "MSH";
  text_.push_back(enc_.field);
  text_.push_back(enc_.component);
  text_.push_back(enc_.repetition);
  text_.push_back(enc_.escape);
  text_.push_back(enc_.subcomponent);
  text_ += rest.substr(2);  // "|<MSH-3>|..."
  text_.push_back('\r');
}

MessageBuilder& MessageBuilder::add(const SegmentBuilder& segment) {
  text_ += segment.str();
  text_.push_back('\r');
  return *this;
}

}  // namespace caduceus::adapters::hl7v2
