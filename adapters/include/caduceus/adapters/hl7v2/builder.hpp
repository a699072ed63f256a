#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "caduceus/adapters/hl7v2/message.hpp"

namespace caduceus::adapters::hl7v2 {

// Builds one segment field by field. Every text given is escaped (the delimiters and the escape character become
// \F\ \S\ \T\ \R\ \E\), so that a value can never change the structure of the message. Fields are numbered as in
// the standard (PID-3 is field(3, ...)); fields not set are empty, trailing empty fields are left out.
class SegmentBuilder {
 public:
  explicit SegmentBuilder(std::string name, const Encoding& encoding = {}) : name_(std::move(name)), enc_(encoding) {}

  // Field n, one repetition with one component.
  SegmentBuilder& field(std::size_t n, std::string_view text);
  // Field n, one repetition whose components are `components` (trailing empty ones left out).
  SegmentBuilder& components(std::size_t n, const std::vector<std::string>& components);
  // Field n, several repetitions, each a list of components.
  SegmentBuilder& repetitions(std::size_t n, const std::vector<std::vector<std::string>>& reps);

  // The segment's text, without the segment terminator.
  std::string str() const;

 private:
  std::string name_;
  Encoding enc_;
  std::vector<std::string> fields_;  // fields_[n - 1]: field n, escaped and joined
  std::string& slot(std::size_t n);
  std::string join(const std::vector<std::string>& components) const;
};

// The header of a message we send (MSH).
struct MessageHeader {
  std::string sending_application = "CADUCEUS", sending_facility;
  std::string receiving_application, receiving_facility;
  std::string timestamp;   // MSH-7, a DTM (YYYYMMDDHHMMSS+ZZZZ)
  std::string type;        // MSH-9.1 (ORM)
  std::string trigger;     // MSH-9.2 (O01)
  std::string structure;   // MSH-9.3 (ORM_O01)
  std::string control_id;  // MSH-10
  std::string processing_id = "P";
  std::string version = "2.5.1";
};

// A message: MSH from the header, then the segments added, each ended by CR.
class MessageBuilder {
 public:
  explicit MessageBuilder(const MessageHeader& header);
  MessageBuilder& add(const SegmentBuilder& segment);
  const Encoding& encoding() const noexcept { return enc_; }
  SegmentBuilder segment(std::string name) const { return SegmentBuilder(std::move(name), enc_); }
  std::string str() const { return text_; }

 private:
  Encoding enc_;
  std::string text_;
};

}  // namespace caduceus::adapters::hl7v2
