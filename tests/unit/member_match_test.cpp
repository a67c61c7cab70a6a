// HRex $member-match, the pure part (fhir/member_match.hpp): the caller's memberMatch checked and
// turned into the operation's Parameters, the source's answer read, a 422 classified, the Consent as
// the target stores it.
#include "p2p/fhir/member_match.hpp"

#include <gtest/gtest.h>

namespace p2p::fhir {
namespace {

using nlohmann::json;

json request() {
  return json::parse(R"({
    "patient": {"resourceType": "Patient", "name": [{"family": "Person", "given": ["Patricia", "Ann"]}],
                "gender": "female", "birthDate": "1974-12-25"},
    "coverageToMatch": {"resourceType": "Coverage", "status": "active",
      "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MB"}]},
                      "system": "http://old-payer.example.org/member-id", "value": "DH10001235"}],
      "relationship": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/subscriber-relationship", "code": "self"}]},
      "beneficiary": {"reference": "Patient/somewhere-else"},
      "payor": [{"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "9876543210"}}]},
    "coverageToLink": {"status": "active", "subscriberId": "234567",
      "relationship": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/subscriber-relationship", "code": "self"}]},
      "payor": [{"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "0123456789"}}]},
    "consent": {"policy": "regular", "start": "2026-12-01", "end": "2027-03-01"}
  })");
}

const json& named(const json& parameters, const std::string& name) {
  for (const auto& item : parameters["parameter"]) {
    if (item["name"] == name) return item["resource"];
  }
  throw std::runtime_error("no parameter " + name);
}

std::string refusal(const json& member_match) {
  try {
    member_match_parameters(member_match);
  } catch (const MemberMatchInputError& error) {
    return error.what();
  }
  return "(accepted)";
}

TEST(MemberMatchParameters, HoldTheFourHrexParametersWithLocalReferencesToTheMember) {
  const json parameters = member_match_parameters(request());
  EXPECT_EQ(parameters["resourceType"], "Parameters");
  ASSERT_EQ(parameters["parameter"].size(), 4u);
  const json& patient = named(parameters, "MemberPatient");
  EXPECT_EQ(patient["id"], "member");
  EXPECT_EQ(patient["birthDate"], "1974-12-25");
  // HRex mm-6: the coverages and the Consent point at MemberPatient by a local reference.
  EXPECT_EQ(named(parameters, "CoverageToMatch")["beneficiary"]["reference"], "Patient/member");
  EXPECT_EQ(named(parameters, "CoverageToLink")["beneficiary"]["reference"], "Patient/member");
  EXPECT_EQ(named(parameters, "CoverageToLink")["resourceType"], "Coverage");  // filled in when left out
  EXPECT_EQ(named(parameters, "CoverageToMatch")["identifier"][0]["value"], "DH10001235");
  const json& consent = named(parameters, "Consent");
  EXPECT_EQ(consent["patient"]["reference"], "Patient/member");
}

TEST(MemberMatchParameters, BuildTheHrexConsentFromTheShortForm) {
  const json consent = named(member_match_parameters(request()), "Consent");
  EXPECT_EQ(consent["status"], "active");
  EXPECT_EQ(consent["policy"][0]["uri"], std::string(kHrexConsentPolicyRegular));
  EXPECT_EQ(consent["provision"]["period"], json::parse(R"({"start": "2026-12-01", "end": "2027-03-01"})"));
  EXPECT_EQ(consent["category"][0]["coding"][0]["code"], "IDSCL");
  EXPECT_EQ(consent["performer"][0]["reference"], "Patient/member");
  // The old payer discloses (performer), the new payer receives (IRCP): the payors of the two coverages.
  const json& actors = consent["provision"]["actor"];
  ASSERT_EQ(actors.size(), 2u);
  EXPECT_EQ(actors[0]["role"]["coding"][0]["code"], "performer");
  EXPECT_EQ(actors[0]["reference"]["identifier"]["value"], "9876543210");
  EXPECT_EQ(actors[1]["role"]["coding"][0]["code"], "IRCP");
  EXPECT_EQ(actors[1]["reference"]["identifier"]["value"], "0123456789");

  json sensitive = request();
  sensitive["consent"]["policy"] = "sensitive";
  EXPECT_EQ(named(member_match_parameters(sensitive), "Consent")["policy"][0]["uri"],
            std::string(kHrexConsentPolicySensitive));
}

TEST(MemberMatchParameters, TakeACompleteHrexConsentAndMakeItsMemberReferencesLocal) {
  json body = request();
  body["consent"] = named(member_match_parameters(request()), "Consent");
  body["consent"]["patient"] = {{"reference", "https://new-payer.example.org/fhir/Patient/77"}};
  body["consent"]["sourceReference"] = {{"reference", "https://new-payer.example.org/fhir/DocumentReference/form-1"}};
  const json consent = named(member_match_parameters(body), "Consent");
  EXPECT_EQ(consent["patient"]["reference"], "Patient/member");
  EXPECT_EQ(consent["sourceReference"]["reference"], "https://new-payer.example.org/fhir/DocumentReference/form-1");
  EXPECT_EQ(consent["id"], "consent");

  body["consent"]["policy"] = json::array({{{"uri", "http://example.org/my-policy"}}});
  EXPECT_NE(refusal(body).find("sourcePayer.memberMatch.consent.policy must hold one policy whose uri is"),
            std::string::npos) << refusal(body);
}

TEST(MemberMatchParameters, RefuseAMissingOrMisshapenFieldNamingIt) {
  const auto without = [](const json::json_pointer& pointer) {
    json body = request();
    body.at(pointer.parent_pointer()).erase(pointer.back());
    return refusal(body);
  };
  EXPECT_EQ(without("/patient"_json_pointer), "sourcePayer.memberMatch.patient is required");
  EXPECT_EQ(without("/patient/birthDate"_json_pointer), "sourcePayer.memberMatch.patient.birthDate is required");
  EXPECT_EQ(without("/coverageToLink"_json_pointer), "sourcePayer.memberMatch.coverageToLink is required");
  EXPECT_EQ(without("/coverageToMatch/payor"_json_pointer), "sourcePayer.memberMatch.coverageToMatch.payor is required");
  EXPECT_EQ(without("/coverageToMatch/relationship"_json_pointer),
            "sourcePayer.memberMatch.coverageToMatch.relationship is required");
  EXPECT_EQ(without("/coverageToLink/subscriberId"_json_pointer),
            "sourcePayer.memberMatch.coverageToLink.identifier or coverageToLink.subscriberId is required: the member "
            "id on that payer's card");
  EXPECT_EQ(without("/consent/end"_json_pointer), "sourcePayer.memberMatch.consent.end is required");

  const auto with = [](const json::json_pointer& pointer, const json& value) {
    json body = request();
    body[pointer] = value;
    return refusal(body);
  };
  EXPECT_EQ(with("/patient/birthDate"_json_pointer, "25/12/1974"),
            "sourcePayer.memberMatch.patient.birthDate must be a FHIR date (YYYY-MM-DD)");
  EXPECT_EQ(with("/patient/birthDate"_json_pointer, "1974-12"),
            "sourcePayer.memberMatch.patient.birthDate must be a FHIR date (YYYY-MM-DD)");
  EXPECT_EQ(with("/patient/gender"_json_pointer, "f"),
            "sourcePayer.memberMatch.patient.gender must be one of male, female, other, unknown");
  EXPECT_EQ(with("/patient/resourceType"_json_pointer, "Person"),
            "sourcePayer.memberMatch.patient.resourceType must be \"Patient\"");
  EXPECT_TRUE(with("/patient/name"_json_pointer, json::array())
                  .starts_with("sourcePayer.memberMatch.patient.name must be a non-empty array of HumanName"));
  EXPECT_EQ(with("/coverageToMatch/status"_json_pointer, "current"),
            "sourcePayer.memberMatch.coverageToMatch.status must be one of active, cancelled, draft, entered-in-error");
  EXPECT_EQ(with("/consent/policy"_json_pointer, "all"),
            "sourcePayer.memberMatch.consent.policy must be \"regular\" (all but sensitive data) or \"sensitive\" "
            "(everything)");
  EXPECT_EQ(with("/consent/end"_json_pointer, "2026-11-30"),
            "sourcePayer.memberMatch.consent.end must not be before consent.start");
  EXPECT_EQ(with("/consent/start"_json_pointer, "2026-13-01"),
            "sourcePayer.memberMatch.consent.start must be a date (YYYY-MM-DD)");
  EXPECT_TRUE(with("/consent/purpose"_json_pointer, "x")
                  .starts_with("sourcePayer.memberMatch.consent.purpose is not a member of the short form (policy"));
  EXPECT_EQ(with("/extra"_json_pointer, 1),
            "sourcePayer.memberMatch.extra is not known (patient, coverageToMatch, coverageToLink, consent)");
  EXPECT_EQ(refusal(json::array()).substr(0, 40), "sourcePayer.memberMatch must be an objec");
}

TEST(MemberMatchAnswer, GivesTheIdentifierAndThePatientIdRelativeOrAbsolute) {
  const std::string endpoint = "https://old-payer.example.org/fhir";
  const auto answer = read_member_match_answer(R"({"resourceType": "Parameters", "parameter": [
      {"name": "MemberIdentifier", "valueIdentifier": {"type": {"coding": [{"system":
        "http://hl7.org/fhir/us/davinci-hrex/CodeSystem/hrex-temp", "code": "UMB"}]},
        "system": "http://old-payer.example.org/member-id", "value": "55678"}},
      {"name": "MemberId", "valueReference": {"reference": "Patient/pat1"}}]})",
                                               endpoint);
  EXPECT_EQ(answer.member_identifier["value"], "55678");
  EXPECT_EQ(answer.member_id, "pat1");

  const auto absolute = read_member_match_answer(R"({"resourceType": "Parameters", "parameter": [
      {"name": "MemberIdentifier", "valueIdentifier": {"value": "55678"}},
      {"name": "MemberId", "valueReference": {"reference": "https://old-payer.example.org/fhir/Patient/pat1/_history/3"}}]})",
                                                 endpoint);
  EXPECT_EQ(absolute.member_id, "pat1");

  // Only the identifier's type, system and value are kept (it is stored and shown in the job JSON).
  const auto cluttered = read_member_match_answer(R"({"resourceType": "Parameters", "parameter": [
      {"name": "MemberIdentifier", "valueIdentifier": {"value": "55678", "system": 42, "assigner": {"display": "x"},
        "extension": [{"url": "u", "valueString": "v"}]}},
      {"name": "MemberId", "valueReference": {"reference": "Patient/pat1"}}]})",
                                                  endpoint);
  EXPECT_EQ(cluttered.member_identifier, json::parse(R"({"value": "55678"})"));

  // HRex 1.0.0 (Inferno's mock): only a MemberIdentifier of type MB.
  const auto only_identifier = read_member_match_answer(R"({"resourceType": "Parameters", "parameter": [
      {"name": "MemberIdentifier", "valueIdentifier": {"type": {"coding": [{"system":
        "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MB"}]}, "value": "99999"}}]})",
                                                        endpoint);
  EXPECT_EQ(only_identifier.member_identifier["value"], "99999");
  EXPECT_FALSE(only_identifier.member_id);
}

TEST(MemberMatchAnswer, RefusesWhatIsNotAnHrexAnswer) {
  const std::string endpoint = "https://old-payer.example.org/fhir";
  const auto refused = [&](const std::string& body) {
    try {
      read_member_match_answer(body, endpoint);
    } catch (const std::invalid_argument& error) {
      return std::string(error.what());
    }
    return std::string("(accepted)");
  };
  EXPECT_EQ(refused("<html>"), "the source payer's $member-match answer is not a FHIR Parameters resource");
  EXPECT_EQ(refused(R"({"resourceType": "Parameters", "parameter": []})"),
            "the source payer's $member-match answer has no MemberIdentifier with a value");
  EXPECT_NE(refused(R"({"resourceType": "Parameters", "parameter": [{"name": "MemberIdentifier", "valueIdentifier":
      {"value": "1"}}, {"name": "MemberId", "valueReference": {"reference": "https://elsewhere.example/fhir/Patient/1"}}]})")
                .find("not a Patient of its FHIR endpoint"),
            std::string::npos);
  // A MemberId is Patient/{id} or Patient/{id}/_history/{vid}, and the id a real one: no path tricks.
  for (const std::string reference : {"Patient/../../x", "Patient/..", "Patient/a/b", "Patient/a/_history", "Patient/"}) {
    EXPECT_NE(refused(R"({"resourceType": "Parameters", "parameter": [{"name": "MemberIdentifier", "valueIdentifier":
        {"value": "1"}}, {"name": "MemberId", "valueReference": {"reference": ")" + reference + R"("}}]})")
                  .find("not a FHIR id"),
              std::string::npos)
        << reference;
  }
}

TEST(MemberMatchAnswer, APatientSearchMustFindExactlyOne) {
  EXPECT_EQ(single_patient_id(R"({"resourceType": "Bundle", "type": "searchset", "entry": [
      {"resource": {"resourceType": "Patient", "id": "pat1"}, "search": {"mode": "match"}},
      {"resource": {"resourceType": "OperationOutcome"}, "search": {"mode": "outcome"}}]})"),
            "pat1");
  EXPECT_THROW(single_patient_id(R"({"resourceType": "Bundle", "type": "searchset"})"), std::invalid_argument);
  EXPECT_THROW(single_patient_id(R"({"resourceType": "Bundle", "entry": [
      {"resource": {"resourceType": "Patient", "id": "a"}}, {"resource": {"resourceType": "Patient", "id": "b"}}]})"),
               std::invalid_argument);
}

TEST(MemberMatchRefusal, IsConsentRefusedWhenTheSourceSpeaksOfConsent) {
  EXPECT_EQ(refusal_kind("Consent request cannot be complied with: policy #sensitive not supported"), "consent-refused");
  EXPECT_EQ(refusal_kind("No unique member match"), "no-match");
  EXPECT_EQ(refusal_kind(""), "no-match");
}

TEST(MemberMatchConsent, OnTheTargetPointsAtTheTargetsPatientAndCarriesTheJobsTag) {
  const json consent =
      consent_for_target(member_match_parameters(request()), "p2p-batch-job-7-consent", "tgt-123", "urn:tag", "batch-job-7");
  EXPECT_EQ(consent["id"], "p2p-batch-job-7-consent");
  EXPECT_EQ(consent["patient"]["reference"], "Patient/tgt-123");
  EXPECT_EQ(consent["performer"][0]["reference"], "Patient/tgt-123");
  EXPECT_EQ(consent["provision"]["actor"][0]["reference"]["identifier"]["value"], "9876543210");
  EXPECT_EQ(consent["meta"]["tag"][0], json::parse(R"({"system": "urn:tag", "code": "batch-job-7"})"));
}

}  // namespace
}  // namespace p2p::fhir
