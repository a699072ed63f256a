#include "caduceus/adapters/hl7v2/structures.hpp"

#include <cctype>
#include <map>
#include <stdexcept>
#include <utility>

namespace caduceus::adapters::hl7v2 {
namespace {

// The abstract message syntax of each structure, as the v2 standard writes it (chapters 2-10): [x] optional,
// {x} repeating, <a|b> a choice, NAME: a group. Where versions 2.3 to 2.8 differ, the later segments are added as
// optional (SFT, UAC, ARV, PRT, ...), so that a message of any of those versions fits.
const std::pair<const char*, const char*> kDefinitions[] = {
    {"ADT_A01",
     "MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] [{NK1}] PV1 [PV2] [{ARV}] [{ROL}] [{DB1}] [{OBX}] [{AL1}] "
     "[{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{GT1}] [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}]}] [ACC] [UB1] [UB2] "
     "[PDA]"},
    // (the same as ADT_A01 without PDA)
    {"ADT_A05",
     "MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] [{NK1}] PV1 [PV2] [{ARV}] [{ROL}] [{DB1}] [{OBX}] [{AL1}] "
     "[{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{GT1}] [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}]}] [ACC] [UB1] [UB2]"},
    {"ADT_A02", "MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] PV1 [PV2] [{ARV}] [{ROL}] [{DB1}] [{OBX}] [PDA]"},
    {"ADT_A03",
     "MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] [{NK1}] PV1 [PV2] [{ARV}] [{ROL}] [{DB1}] [{AL1}] [{DG1}] "
     "[DRG] [{PROCEDURE: PR1 [{ROL}]}] [{OBX}] [{GT1}] [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}]}] [ACC] [PDA]"},
    // (A11, cancel admit, since v2.5)
    {"ADT_A09", "MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] PV1 [PV2] [{DB1}] [{OBX}] [{DG1}]"},
    {"ADT_A39", "MSH [{SFT}] [UAC] EVN {PATIENT: PID [PD1] [{ARV}] MRG [PV1]}"},
    {"ORU_R01",
     "MSH [{SFT}] [UAC] {PATIENT_RESULT: [PATIENT: PID [PD1] [{PRT}] [{NTE}] [{NK1}] [{ARV}] [{OBX}] "
     "[VISIT: PV1 [PV2] [{PRT}]]] {ORDER_OBSERVATION: [ORC] OBR [{NTE}] [{PRT}] [{TIMING_QTY: TQ1 [{TQ2}]}] "
     "[CTD] [{OBSERVATION: OBX [{PRT}] [{NTE}]}] [{FT1}] [{CTI}] [{SPECIMEN: SPM [{OBX}]}]}} [DSC]"},
    {"ORM_O01",
     "MSH [{NTE}] [PATIENT: PID [PD1] [{NTE}] [PATIENT_VISIT: PV1 [PV2]] [{INSURANCE: IN1 [IN2] [IN3]}] [GT1] "
     "[{AL1}]] {ORDER: ORC [ORDER_DETAIL: <OBR|RQD|RQ1|RXO|ODS|ODT> [{NTE}] [CTD] [{DG1}] "
     "[{OBSERVATION: OBX [{NTE}]}]] [{FT1}] [{CTI}] [BLG]}"},
    {"OML_O21",
     "MSH [{SFT}] [UAC] [{NTE}] [PATIENT: PID [PD1] [{PRT}] [{NTE}] [{NK1}] [{ARV}] [PATIENT_VISIT: PV1 [PV2] "
     "[{PRT}]] [{INSURANCE: IN1 [IN2] [IN3]}] [GT1] [{AL1}]] {ORDER: ORC [{PRT}] [{TIMING: TQ1 [{TQ2}]}] "
     "[OBSERVATION_REQUEST: OBR [{PRT}] [{TCD}] [{NTE}] [CTD] [{DG1}] [{OBSERVATION: OBX [{PRT}] [TCD] [{NTE}]}] "
     "[{SPECIMEN: SPM [{OBX}] [{CONTAINER: SAC [{OBX}]}]}] [{PRIOR_RESULT: [PATIENT_PRIOR: PID [PD1]] "
     "[PATIENT_VISIT_PRIOR: PV1 [PV2]] [{AL1}] {ORDER_PRIOR: [ORC] OBR [{TIMING_PRIOR: TQ1 [{TQ2}]}] [{NTE}] "
     "[CTD] {OBSERVATION_PRIOR: OBX [{NTE}]}}}]] [{FT1}] [{CTI}] [BLG]}"},
    {"RDE_O11",
     "MSH [{SFT}] [UAC] [{NTE}] [PATIENT: PID [PD1] [{PRT}] [{NTE}] [{ARV}] [PATIENT_VISIT: PV1 [PV2] [{PRT}]] "
     "[{INSURANCE: IN1 [IN2] [IN3]}] [GT1] [{AL1}]] {ORDER: ORC [{PRT}] [{TIMING: TQ1 [{TQ2}]}] "
     "[ORDER_DETAIL: RXO [{NTE}] [{RXR}] [{COMPONENT: RXC [{NTE}]}]] [{PRT}] RXE [{PRT}] [{NTE}] "
     "[{TIMING_ENCODED: TQ1 [{TQ2}]}] [{RXR}] [{RXC}] [{OBSERVATION: OBX [{PRT}] [{NTE}]}] [{FT1}] [BLG] [{CTI}]}"},
    {"SIU_S12",
     "MSH [{SFT}] [UAC] SCH [{TQ1}] [{NTE}] [{PATIENT: PID [PD1] [{PRT}] [PV1] [PV2] [{PRT}] [{OBX}] [{DG1}]}] "
     "{RESOURCES: RGS [{SERVICE: AIS [{NTE}]}] [{GENERAL_RESOURCE: AIG [{NTE}]}] "
     "[{LOCATION_RESOURCE: AIL [{NTE}]}] [{PERSONNEL_RESOURCE: AIP [{NTE}]}]}"},
    {"ACK", "MSH [{SFT}] [UAC] MSA [{ERR}]"},
};

// Trigger events per structure (v2.5 to 2.8 message definitions).
const std::pair<const char*, const char*> kEvents[] = {
    {"ADT_A01", "ADT A01 A04 A08 A13"},
    {"ADT_A05", "ADT A05 A14 A28 A31"},
    {"ADT_A02", "ADT A02"},
    {"ADT_A03", "ADT A03"},
    {"ADT_A09", "ADT A09 A10 A11"},
    {"ADT_A39", "ADT A39 A40 A41 A42"},
    {"ORU_R01", "ORU R01"},
    {"ORM_O01", "ORM O01"},
    {"OML_O21", "OML O21"},
    {"RDE_O11", "RDE O11 O25"},
    {"SIU_S12", "SIU S12 S13 S14 S15 S16 S17 S18 S19 S20 S21 S22 S23 S24 S26"},
    {"ACK", "ACK *"},
};

class NotationParser {
 public:
  explicit NotationParser(std::string_view text) : text_(text) {}

  std::vector<StructureNode> parse_all() {
    auto out = sequence();
    skip();
    if (pos_ != text_.size()) throw std::logic_error("structure notation: unexpected '" + std::string(1, peek()) + "'");
    return out;
  }

 private:
  std::string_view text_;
  std::size_t pos_ = 0;

  void skip() {
    while (pos_ < text_.size() && text_[pos_] == ' ') ++pos_;
  }
  char peek() {
    skip();
    return pos_ < text_.size() ? text_[pos_] : '\0';
  }
  std::string name() {
    skip();
    std::size_t start = pos_;
    while (pos_ < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '_')) ++pos_;
    if (start == pos_) throw std::logic_error("structure notation: a name expected at " + std::to_string(pos_));
    return std::string(text_.substr(start, pos_ - start));
  }
  void expect(char c) {
    if (peek() != c) throw std::logic_error(std::string("structure notation: '") + c + "' expected");
    ++pos_;
  }

  // Elements up to a closing bracket, '|' or the end.
  std::vector<StructureNode> sequence() {
    std::vector<StructureNode> out;
    for (char c = peek(); c != '\0' && c != ']' && c != '}' && c != '>' && c != '|'; c = peek()) {
      auto items = element();
      for (auto& i : items) out.push_back(std::move(i));
    }
    return out;
  }

  // The content of brackets: "NAME: elements" (a group), or elements (one: itself; several: never in our table).
  StructureNode content() {
    skip();
    std::size_t save = pos_;
    if (std::isalpha(static_cast<unsigned char>(peek()))) {
      std::string n = name();
      if (peek() == ':') {
        ++pos_;
        StructureNode g;
        g.name = n;
        g.children = sequence();
        return g;
      }
      pos_ = save;
    }
    auto items = sequence();
    if (items.size() != 1) throw std::logic_error("structure notation: an unnamed group");
    return std::move(items.front());
  }

  std::vector<StructureNode> element() {
    char c = peek();
    if (c == '[') {
      ++pos_;
      StructureNode n = content();
      expect(']');
      n.optional = true;
      return {std::move(n)};
    }
    if (c == '{') {
      ++pos_;
      StructureNode n = content();
      expect('}');
      n.repeating = true;
      return {std::move(n)};
    }
    if (c == '<') {  // a choice: each alternative, optional
      ++pos_;
      std::vector<StructureNode> out;
      for (;;) {
        for (auto& n : sequence()) {
          n.optional = true;
          out.push_back(std::move(n));
        }
        if (peek() == '|') {
          ++pos_;
          continue;
        }
        expect('>');
        return out;
      }
    }
    StructureNode n;
    n.name = name();
    return {std::move(n)};
  }
};

struct Table {
  std::map<std::string, StructureNode, std::less<>> structures;
  std::map<std::string, std::string, std::less<>> by_event;  // "ADT^A04" -> "ADT_A01"
};

const Table& table() {
  static const Table t = [] {
    Table out;
    for (const auto& [name, notation] : kDefinitions) {
      StructureNode root;
      root.name = name;
      root.children = NotationParser(notation).parse_all();
      out.structures.emplace(name, std::move(root));
    }
    for (const auto& [structure, events] : kEvents) {
      std::string_view list(events);
      std::size_t space = list.find(' ');
      std::string type(list.substr(0, space));
      list.remove_prefix(space + 1);
      while (!list.empty()) {
        std::size_t end = list.find(' ');
        out.by_event[type + "^" + std::string(list.substr(0, end))] = structure;
        if (end == std::string_view::npos) break;
        list.remove_prefix(end + 1);
      }
    }
    return out;
  }();
  return t;
}

}  // namespace

const StructureNode* find_structure(std::string_view structure) {
  const auto& s = table().structures;
  auto it = s.find(structure);
  return it == s.end() ? nullptr : &it->second;
}

std::string structure_for(std::string_view type, std::string_view trigger) {
  const auto& e = table().by_event;
  if (auto it = e.find(std::string(type) + "^" + std::string(trigger)); it != e.end()) return it->second;
  if (auto it = e.find(std::string(type) + "^*"); it != e.end()) return it->second;
  return {};
}

std::vector<std::string> known_structures() {
  std::vector<std::string> out;
  for (const auto& [name, node] : table().structures) out.push_back(name);
  return out;
}

}  // namespace caduceus::adapters::hl7v2
