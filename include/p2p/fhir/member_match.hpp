#pragma once
// Da Vinci HRex $member-match for the payer-mediated exchange (issue #12; ../docs/exchange.md,
// "Payer-mediated exchange"). Pure: JSON in, JSON out, no I/O.
//
//  - member_match_parameters: the caller's sourcePayer.memberMatch (the member's demographics, the old
//    payer's card, the new payer's coverage, the member's consent as a short form or a complete HRex
//    Consent) checked and turned into the Parameters the operation takes, with the local references
//    HRex asks for (mm-6: Coverage.beneficiary and Consent.patient = Patient/<MemberPatient.id>).
//  - read_member_match_answer: what the source answered with 200: MemberIdentifier and maybe MemberId.
//  - refusal_kind: a 422 read as no-match or consent-refused.
//  - consent_for_target: the Consent that was sent, as the target stores it (the tracking Task's focus).
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace p2p::fhir {

// A mistake in the caller's memberMatch: what() starts with the field's path
// (sourcePayer.memberMatch.patient.birthDate ...) and says what is expected.
class MemberMatchInputError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

inline constexpr std::string_view kHrexConsentPolicyRegular =
    "http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html#regular";
inline constexpr std::string_view kHrexConsentPolicySensitive =
    "http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html#sensitive";

// The local ids the Parameters give the member's resources (references between them use these).
inline constexpr std::string_view kMemberPatientId = "member";

// Throws MemberMatchInputError.
nlohmann::json member_match_parameters(const nlohmann::json& member_match);

struct MemberMatchAnswer {
  nlohmann::json member_identifier;      // the Identifier (type UMB or MB, system, value)
  std::optional<std::string> member_id;  // the Patient id at the source, when MemberId came with it
};

// Throws std::invalid_argument saying what is wrong with the answer (not Parameters, no
// MemberIdentifier with a value, a MemberId that is not a Patient of `source_fhir_endpoint`).
MemberMatchAnswer read_member_match_answer(std::string_view body, std::string_view source_fhir_endpoint);

// The Patient id in a search result Bundle that must hold exactly one Patient (search mode match);
// throws std::invalid_argument saying how many it found.
std::string single_patient_id(std::string_view bundle);

// "consent-refused" when the source's OperationOutcome text speaks of consent, else "no-match"
// (HRex answers both with 422 and gives no code to tell them apart).
std::string refusal_kind(std::string_view outcome_text);

// The Consent of `parameters` with id `consent_id`, its local member references pointed at the
// member's Patient on the target, and the job's exchange tag.
nlohmann::json consent_for_target(const nlohmann::json& parameters, const std::string& consent_id,
                                  const std::string& target_patient_id, const std::string& tag_system,
                                  const std::string& tag_code);

}  // namespace p2p::fhir
