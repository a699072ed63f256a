// The HL7 v2 parser: delimiters, escapes, character sets, segment ends, structures and groups, errors with their
// position; the ACK builder; the MLLP framer.
#include <gtest/gtest.h>

#include "caduceus/adapters/hl7v2/ack.hpp"
#include "caduceus/adapters/hl7v2/message.hpp"
#include "caduceus/adapters/hl7v2/structures.hpp"
#include "caduceus/adapters/mllp.hpp"

namespace caduceus::adapters::hl7v2 {
namespace {

const char* kAdt =
    "MSH|^~\\&|SendApp|SendFac|RecvApp|RecvFac|20240102030405||ADT^A04|CTRL1|P|2.5.1\r"
    "EVN|A04|20240102\r"
    "PID|1||123^^^Hosp&1.2.3&ISO^MR~456^^^SSA^SS||Doe^John^Q^Jr^Dr^^L||19800115|M\r"
    "PV1|1|O\r";

TEST(Hl7v2Parser, FieldsRepetitionsComponentsSubcomponents) {
  auto m = parse(kAdt);
  ASSERT_TRUE(m.has_value()) << m.error().message;
  EXPECT_EQ(m->type, "ADT");
  EXPECT_EQ(m->trigger, "A04");
  EXPECT_EQ(m->structure, "ADT_A01");  // derived: MSH-9.3 is empty and A04 uses ADT_A01
  EXPECT_TRUE(m->structure_known);
  EXPECT_EQ(m->control_id, "CTRL1");
  EXPECT_EQ(m->processing_id, "P");
  EXPECT_EQ(m->version, "2.5.1");
  EXPECT_EQ(m->accept_ack, "");
  EXPECT_EQ(m->sending_application, "SendApp");
  ASSERT_EQ(m->segments.size(), 4u);
  const Segment& msh = m->msh();
  EXPECT_EQ(msh.get(1), "|");
  EXPECT_EQ(msh.get(2), "^~\\&");
  EXPECT_EQ(msh.get(7), "20240102030405");
  const Segment* pid = m->find("PID");
  ASSERT_NE(pid, nullptr);
  EXPECT_EQ(pid->position, 3u);
  EXPECT_EQ(pid->repetitions(3), 2u);
  EXPECT_EQ(pid->get(3), "123");
  EXPECT_EQ(pid->get(3, 4), "Hosp");
  EXPECT_EQ(pid->get(3, 4, 2), "1.2.3");
  EXPECT_EQ(pid->get(3, 4, 3), "ISO");
  EXPECT_EQ(pid->get(3, 5), "MR");
  EXPECT_EQ(pid->get(3, 1, 1, 2), "456");
  EXPECT_EQ(pid->get(3, 4, 1, 2), "SSA");
  EXPECT_EQ(pid->get(3, 1, 1, 3), "");  // no third repetition
  EXPECT_EQ(pid->get(5, 2), "John");
  EXPECT_EQ(pid->components(5), 7u);
  EXPECT_EQ(pid->get(5, 9), "");
  EXPECT_EQ(pid->get(2), "");
  EXPECT_EQ(pid->get(40), "");
  EXPECT_TRUE(m->problems.empty());
}

TEST(Hl7v2Parser, PaddedHeaderValuesAreTrimmed) {
  auto m = parse("MSH|^~\\&|A|B|C|D|2024||ADT^A01| 77 |P|2.3||| \rEVN|A01\r");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->control_id, "77");
  EXPECT_EQ(m->accept_ack, "");  // original mode
}

TEST(Hl7v2Parser, OtherDelimitersFromMsh1AndMsh2) {
  auto m = parse("MSH#$%!@#A#B#C#D#20240101##ADT$A01#X1#P#2.5\rEVN##2024\rPID#1##123$$$Auth@1.2@ISO%456#\rPV1#1\r");
  ASSERT_TRUE(m.has_value()) << m.error().message;
  EXPECT_EQ(m->encoding.field, '#');
  EXPECT_EQ(m->encoding.component, '$');
  EXPECT_EQ(m->encoding.repetition, '%');
  EXPECT_EQ(m->encoding.escape, '!');
  EXPECT_EQ(m->encoding.subcomponent, '@');
  EXPECT_EQ(m->trigger, "A01");
  const Segment* pid = m->first("PID");
  ASSERT_NE(pid, nullptr);
  EXPECT_EQ(pid->get(3, 4, 2), "1.2");
  EXPECT_EQ(pid->get(3, 1, 1, 2), "456");
}

TEST(Hl7v2Parser, EscapeSequences) {
  Encoding e;
  EXPECT_EQ(unescape("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f", e, Charset::kAscii), "a|b^c&d~e\\f");
  EXPECT_EQ(unescape("\\X4142\\", e, Charset::kAscii), "AB");
  EXPECT_EQ(unescape("caf\\XE9\\", e, Charset::kLatin1), "caf\xC3\xA9");  // é from 8859/1
  EXPECT_EQ(unescape("caf\\XC3A9\\", e, Charset::kUtf8), "caf\xC3\xA9");  // é from UTF-8 bytes
  EXPECT_EQ(unescape("x\\XC3\\y", e, Charset::kUtf8), "x\\XC3\\y");       // not UTF-8: kept as it is
  EXPECT_EQ(unescape("line\\.br\\next \\H\\bold\\N\\", e, Charset::kAscii), "line\\.br\\next \\H\\bold\\N\\");
  EXPECT_EQ(unescape("open \\F", e, Charset::kAscii), "open \\F");  // unterminated: kept
  EXPECT_EQ(unescape("\\P\\", e, Charset::kAscii), "\\P\\");        // no truncation character declared
  EXPECT_EQ(escape("a|b^c&d~e\\f", e), "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f");
  // In a message: the escaped delimiters are data, not delimiters.
  auto m = parse("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rEVN|A01\rPID|1||7||O\\F\\Brien\\S\\x^Ann\\T\\Marie\r");
  ASSERT_TRUE(m.has_value());
  const Segment* pid = m->first("PID");
  EXPECT_EQ(pid->get(5, 1), "O|Brien^x");
  EXPECT_EQ(pid->get(5, 2), "Ann&Marie");
  EXPECT_EQ(pid->components(5), 2u);
}

TEST(Hl7v2Parser, CharacterSets) {
  // 8859/1: the byte E9 is é.
  auto latin = parse("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5||||||8859/1\rPID|1||7||Ren\xE9\r");
  ASSERT_TRUE(latin.has_value()) << latin.error().message;
  EXPECT_EQ(latin->charset, Charset::kLatin1);
  EXPECT_EQ(latin->first("PID")->get(5), "Ren\xC3\xA9");
  // UTF-8 as declared.
  auto utf8 = parse("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5||||||UNICODE UTF-8\rPID|1||7||Ren\xC3\xA9\r");
  ASSERT_TRUE(utf8.has_value());
  EXPECT_EQ(utf8->charset, Charset::kUtf8);
  EXPECT_EQ(utf8->first("PID")->get(5), "Ren\xC3\xA9");
  // UTF-8 declared, 8859/1 sent: an error naming the segment.
  auto bad = parse("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5||||||UNICODE UTF-8\rEVN|A01\rPID|1||7||Ren\xE9\r");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, ErrorCode::kDataType);
  EXPECT_EQ(bad.error().where.segment, "PID");
  EXPECT_EQ(bad.error().where.position, 3u);
  // A character set we do not read.
  auto other = parse("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5||||||ISO IR87\r");
  ASSERT_FALSE(other.has_value());
  EXPECT_EQ(other.error().where.text(), "MSH-18");
  EXPECT_EQ(other.error().code, ErrorCode::kTableValueNotFound);
  // None declared (ASCII) but 8-bit text: read as 8859/1.
  auto lenient = parse("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rPID|1||7||Ren\xE9\r");
  ASSERT_TRUE(lenient.has_value());
  EXPECT_EQ(lenient->first("PID")->get(5), "Ren\xC3\xA9");
}

TEST(Hl7v2Parser, SegmentEndsAndByteOrderMark) {
  std::string cr = kAdt;
  std::string lf = cr, crlf;
  for (char& c : lf)
    if (c == '\r') c = '\n';
  for (char c : cr) crlf += c == '\r' ? std::string("\r\n") : std::string(1, c);
  std::string bom = "\xEF\xBB\xBF" + crlf + "\n\n";
  for (const std::string& text : {cr, lf, crlf, bom}) {
    auto m = parse(text);
    ASSERT_TRUE(m.has_value()) << m.error().message;
    ASSERT_EQ(m->segments.size(), 4u);
    EXPECT_EQ(m->segments[0].name, "MSH");
    EXPECT_EQ(m->segments[3].name, "PV1");
    EXPECT_EQ(m->first("PID")->get(5, 1), "Doe");
  }
}

TEST(Hl7v2Parser, ErrorsCarryTheirPosition) {
  auto none = parse("PID|1||123\r");
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().where.segment, "MSH");
  EXPECT_EQ(none.error().code, ErrorCode::kSegmentSequence);
  EXPECT_FALSE(parse("").has_value());

  auto short_enc = parse("MSH|^~|A|B\r");
  ASSERT_FALSE(short_enc.has_value());
  EXPECT_EQ(short_enc.error().where.text(), "MSH-2");
  auto same = parse("MSH|^^\\&|A|B\r");
  ASSERT_FALSE(same.has_value());
  EXPECT_EQ(same.error().where.text(), "MSH-2");
  auto letter = parse("MSHA^~\\&A\r");
  ASSERT_FALSE(letter.has_value());
  EXPECT_EQ(letter.error().where.text(), "MSH-1");

  auto bad_segment = parse("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rEVN|A01\rpid|1\r");
  ASSERT_FALSE(bad_segment.has_value());
  EXPECT_EQ(bad_segment.error().where.position, 3u);
  EXPECT_NE(bad_segment.error().message.find("segment 3"), std::string::npos);

  Location l;
  l.segment = "PID";
  l.field = 5;
  l.component = 2;
  EXPECT_EQ(l.text(), "PID-5.2");
}

TEST(Hl7v2Parser, GroupsFollowTheStructureDefinition) {
  auto m = parse(
      "MSH|^~\\&|A|B|C|D|2024||ADT^A01^ADT_A01|1|P|2.5\r"
      "EVN|A01\rPID|1||7\rNK1|1\rNK1|2\rPV1|1\rOBX|1\rPR1|1\rROL|1\rROL|2\rPR1|2\rGT1|1\rIN1|1\rIN2|1\rIN1|2\r"
      "ZPI|custom\r");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->root.name, "ADT_A01");
  // Directly in the message: MSH EVN PID NK1 NK1 PV1 OBX GT1; ZPI kept where it came, in the last INSURANCE,
  // with a warning.
  std::vector<std::string> top;
  for (std::size_t i : m->root.segments) top.push_back(m->segments[i].name);
  EXPECT_EQ(top, (std::vector<std::string>{"MSH", "EVN", "PID", "NK1", "NK1", "PV1", "OBX", "GT1"}));
  auto procedures = m->root.all_groups("PROCEDURE");
  ASSERT_EQ(procedures.size(), 2u);
  EXPECT_EQ(m->all("ROL", procedures[0]).size(), 2u);
  EXPECT_EQ(m->find("PR1", procedures[1])->get(1), "2");
  EXPECT_TRUE(m->all("ROL", procedures[1]).empty());
  auto insurances = m->root.all_groups("INSURANCE");
  ASSERT_EQ(insurances.size(), 2u);
  EXPECT_NE(m->find("IN2", insurances[0]), nullptr);
  EXPECT_EQ(m->find("IN2", insurances[1]), nullptr);
  EXPECT_NE(m->find("ZPI", insurances[1]), nullptr);
  ASSERT_EQ(m->problems.size(), 1u);
  EXPECT_TRUE(m->problems[0].warning);
  EXPECT_EQ(m->problems[0].where.segment, "ZPI");
  EXPECT_EQ(m->problems[0].where.position, 16u);
}

TEST(Hl7v2Parser, NestedGroupsOfAnOruR01) {
  auto m = parse(
      "MSH|^~\\&|Lab|L|C|D|2024||ORU^R01|9|P|2.5.1\r"
      "PID|1||7\rPV1|1\rORC|RE\rOBR|1\rOBX|1|NM\rNTE|1\rOBX|2|ST\rOBR|2\rOBX|3|NM\rSPM|1\r");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->structure, "ORU_R01");
  EXPECT_TRUE(m->problems.empty()) << m->problems[0].message;
  auto results = m->root.all_groups("PATIENT_RESULT");
  ASSERT_EQ(results.size(), 1u);
  const Group* patient = results[0]->group("PATIENT");
  ASSERT_NE(patient, nullptr);
  EXPECT_NE(m->find("PID", patient), nullptr);
  ASSERT_NE(patient->group("VISIT"), nullptr);
  auto orders = results[0]->all_groups("ORDER_OBSERVATION");
  ASSERT_EQ(orders.size(), 2u);
  EXPECT_NE(m->find("ORC", orders[0]), nullptr);
  auto observations = orders[0]->all_groups("OBSERVATION");
  ASSERT_EQ(observations.size(), 2u);
  EXPECT_NE(m->find("NTE", observations[0]), nullptr);
  EXPECT_EQ(m->find("OBX", observations[1])->get(2), "ST");
  EXPECT_EQ(m->find("ORC", orders[1]), nullptr);
  EXPECT_EQ(orders[1]->all_groups("OBSERVATION").size(), 1u);
  EXPECT_EQ(orders[1]->all_groups("SPECIMEN").size(), 1u);
}

TEST(Hl7v2Parser, SegmentsOutOfPlaceOrMissingAreWarnings) {
  auto out_of_place = parse("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rEVN|A01\rPID|1||7\rPV1|1\rMSA|AA\r");
  ASSERT_TRUE(out_of_place.has_value());
  ASSERT_EQ(out_of_place->problems.size(), 1u);
  EXPECT_TRUE(out_of_place->problems[0].warning);
  EXPECT_EQ(out_of_place->problems[0].where.segment, "MSA");
  EXPECT_EQ(out_of_place->problems[0].where.position, 5u);

  auto m = parse("MSH|^~\\&|A|B|C|D|2024||ADT^A08^ADT_A08|1|P|2.5\rEVN|A08\rPID|1||7\rAL1|1\r");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->structure, "ADT_A01");  // MSH-9.3 "ADT_A08" is not a structure: derived from the event
  ASSERT_EQ(m->problems.size(), 1u);
  EXPECT_TRUE(m->problems[0].warning);
  EXPECT_EQ(m->problems[0].code, ErrorCode::kSegmentSequence);
  EXPECT_EQ(m->problems[0].where.segment, "PV1");
  EXPECT_NE(m->problems[0].message.find("required segment PV1 missing"), std::string::npos);
}

TEST(Hl7v2Parser, UnknownStructureKeepsTheSegmentsFlat) {
  auto m = parse("MSH|^~\\&|A|B|C|D|2024||VXU^V04^VXU_V04|1|P|2.5\rPID|1\rRXA|1\r");
  ASSERT_TRUE(m.has_value());
  EXPECT_FALSE(m->structure_known);
  EXPECT_EQ(m->structure, "VXU_V04");
  EXPECT_EQ(m->root.segments.size(), 3u);
}

TEST(Hl7v2Structures, TableAsData) {
  EXPECT_EQ(structure_for("ADT", "A31"), "ADT_A05");
  EXPECT_EQ(structure_for("ADT", "A40"), "ADT_A39");
  EXPECT_EQ(structure_for("SIU", "S15"), "SIU_S12");
  EXPECT_EQ(structure_for("ACK", "A01"), "ACK");
  EXPECT_EQ(structure_for("ZZZ", "Z01"), "");
  for (const char* s : {"ADT_A01", "ADT_A39", "ORU_R01", "ORM_O01", "OML_O21", "RDE_O11", "SIU_S12", "ACK"})
    EXPECT_NE(find_structure(s), nullptr) << s;
  const StructureNode* oru = find_structure("ORU_R01");
  ASSERT_EQ(oru->children.size(), 5u);  // MSH [{SFT}] [UAC] {PATIENT_RESULT} [DSC]
  EXPECT_EQ(oru->children[3].name, "PATIENT_RESULT");
  EXPECT_TRUE(oru->children[3].repeating);
  EXPECT_FALSE(oru->children[3].optional);
  // ORM_O01's choice <OBR|RQD|...>: each alternative optional, inside ORDER_DETAIL.
  const StructureNode* orm = find_structure("ORM_O01");
  const StructureNode& order = orm->children.back();
  EXPECT_EQ(order.name, "ORDER");
  EXPECT_EQ(order.children[1].name, "ORDER_DETAIL");
  EXPECT_EQ(order.children[1].children[0].name, "OBR");
  EXPECT_TRUE(order.children[1].children[0].optional);
}

TEST(Hl7v2Ack, OriginalModeWithErrors) {
  auto m = parse(kAdt);
  ASSERT_TRUE(m.has_value());
  Problem p{ErrorCode::kRequiredFieldMissing, m->first("PID")->at(3, 1, 1), "no identifier", false};
  std::string ack = build_ack(AckTarget::of(*m), "AE", "C1.1", "20240101000000+0000", {p});
  EXPECT_EQ(ack,
            "MSH|^~\\&|RecvApp|RecvFac|SendApp|SendFac|20240101000000+0000||ACK^A04^ACK|C1.1|P|2.5.1\r"
            "MSA|AE|CTRL1\r"
            "ERR|PID^1^3^101&Required field missing&HL70357|PID^1^3^1^1|101^Required field missing^HL70357|E||||"
            "PID-3.1, segment 3: no identifier\r");
  auto parsed = parse(ack);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->structure, "ACK");
  EXPECT_TRUE(parsed->problems.empty());
  EXPECT_EQ(parsed->first("MSA")->get(2), "CTRL1");
}

TEST(Hl7v2Ack, FromBytesThatDoNotParse) {
  AckTarget t = AckTarget::of_raw("MSH|^~\\&|S|F|R|G|2024||ORU^R01|XY|P|2.4\rpid|broken");
  EXPECT_EQ(t.control_id, "XY");
  EXPECT_EQ(t.sending_application, "S");
  AckTarget none = AckTarget::of_raw("garbage");
  EXPECT_EQ(none.control_id, "");
  std::string ack = build_ack(none, "AR", "C1", "20240101000000+0000", {});
  EXPECT_EQ(ack, "MSH|^~\\&|CADUCEUS||||20240101000000+0000||ACK|C1|P|2.5.1\rMSA|AR|\r");
}

}  // namespace
}  // namespace caduceus::adapters::hl7v2

namespace caduceus::adapters {
namespace {

TEST(MllpFramer, FramesAcrossReadsAndSeveralPerRead) {
  MllpFramer framer(1024);
  std::string wire = MllpFramer::wrap("MSG1") + MllpFramer::wrap("MSG2") +
                     MllpFramer::wrap(
                         "M\x1C"
                         "3");
  std::vector<MllpFramer::Frame> out;
  for (char c : wire) framer.feed(std::string_view(&c, 1), out);  // one byte per read
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].bytes, "MSG1");
  EXPECT_EQ(out[1].bytes, "MSG2");
  EXPECT_EQ(out[2].bytes,
            "M\x1C"
            "3");  // 0x1C not followed by CR is data
  out.clear();
  framer.feed(wire, out);  // all in one read
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[1].bytes, "MSG2");
  EXPECT_FALSE(framer.in_frame());
}

TEST(MllpFramer, BytesOutsideFramesAndRestartsAreDropped) {
  MllpFramer framer(1024);
  std::vector<MllpFramer::Frame> out;
  framer.feed("GET / HTTP/1.1\r\n", out);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(framer.discarded(), 14u);  // CR and LF between frames are tolerated
  framer.feed(
      "\x0B"
      "half\x0B"
      "whole\x1C\r",
      out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].bytes, "whole");
}

TEST(MllpFramer, OversizeFramesKeepTheirStart) {
  MllpFramer framer(8);
  std::vector<MllpFramer::Frame> out;
  framer.feed(MllpFramer::wrap("0123456789ABCDEF") + MllpFramer::wrap("ok"), out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(out[0].oversize);
  EXPECT_EQ(out[0].bytes, "01234567");
  EXPECT_FALSE(out[1].oversize);
  EXPECT_EQ(out[1].bytes, "ok");
}

}  // namespace
}  // namespace caduceus::adapters
