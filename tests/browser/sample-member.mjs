// The sample member's records at the old payer (the source FHIR test peer), for scripts/demo.sh and the
// browser test: a Patient with what a health plan typically holds about a member over two years:
// coverage, visits, conditions, lab results and vital signs, medicines, immunizations, allergies,
// procedures and lab reports. Valid FHIR R4 (both validators of tests/peers/validate-fhir.mjs accept
// every resource), coded with LOINC, SNOMED CT, RxNorm and CVX. Made up: no real person.

const LOINC = 'http://loinc.org';
const SNOMED = 'http://snomed.info/sct';
const RXNORM = 'http://www.nlm.nih.gov/research/umls/rxnorm';
const CVX = 'http://hl7.org/fhir/sid/cvx';
const UCUM = 'http://unitsofmeasure.org';
const OBS_CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';

const code = (system, value, display) => ({ coding: [{ system, code: value, display }], text: display });

/** The resources of member `patientId` (also their login at the old payer), Patient first. */
export function sampleMemberResources(patientId) {
  const patient = { reference: `Patient/${patientId}` };
  const id = (suffix) => `${patientId}-${suffix}`;
  const resources = [];

  resources.push({
    resourceType: 'Patient',
    id: patientId,
    identifier: [{ system: 'urn:example:evergreen-health-plan:member-id', value: 'EHP-5521-0043' }],
    active: true,
    name: [{ use: 'official', family: 'Doe', given: ['Jane', 'Marie'] }],
    telecom: [{ system: 'phone', value: '555-0142', use: 'home' }],
    gender: 'female',
    birthDate: '1979-04-12',
    address: [{ line: ['1200 Maple Avenue'], city: 'Springfield', state: 'IL', postalCode: '62704', country: 'US' }],
  });

  resources.push({
    resourceType: 'Coverage',
    id: id('coverage'),
    identifier: [{ system: 'urn:example:evergreen-health-plan:member-id', value: 'EHP-5521-0043' }],
    status: 'active',
    type: code('http://terminology.hl7.org/CodeSystem/v3-ActCode', 'HIP', 'health insurance plan policy'),
    subscriberId: 'EHP-5521-0043',
    beneficiary: patient,
    relationship: code('http://terminology.hl7.org/CodeSystem/subscriber-relationship', 'self', 'Self'),
    period: { start: '2023-01-01', end: '2024-12-31' },
    payor: [{ display: 'Evergreen Health Plan' }],
  });

  // Visits
  const visits = [
    ['2023-02-14', 'AMB', 'ambulatory', '185349003', 'Encounter for check up'],
    ['2023-06-03', 'EMER', 'emergency', '50849002', 'Emergency room admission'],
    ['2023-09-21', 'AMB', 'ambulatory', '390906007', 'Follow-up encounter'],
    ['2024-01-30', 'AMB', 'ambulatory', '185349003', 'Encounter for check up'],
    ['2024-07-11', 'AMB', 'ambulatory', '390906007', 'Follow-up encounter'],
  ];
  visits.forEach(([date, cls, clsDisplay, typeCode, typeDisplay], i) => {
    resources.push({
      resourceType: 'Encounter',
      id: id(`enc-${i + 1}`),
      status: 'finished',
      class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: cls, display: clsDisplay },
      type: [code(SNOMED, typeCode, typeDisplay)],
      subject: patient,
      period: { start: `${date}T09:00:00-06:00`, end: `${date}T09:40:00-06:00` },
      serviceProvider: { display: 'Springfield Family Medicine' },
    });
  });
  const encounter = (i) => ({ reference: `Encounter/${id(`enc-${i}`)}` });

  // Conditions
  const conditions = [
    ['44054006', 'Type 2 diabetes mellitus', '2023-02-14', 1],
    ['59621000', 'Essential hypertension', '2023-02-14', 1],
    ['195967001', 'Asthma', '2023-06-03', 2],
  ];
  conditions.forEach(([snomed, display, onset, enc], i) => {
    resources.push({
      resourceType: 'Condition',
      id: id(`cond-${i + 1}`),
      clinicalStatus: code('http://terminology.hl7.org/CodeSystem/condition-clinical', 'active', 'Active'),
      verificationStatus: code('http://terminology.hl7.org/CodeSystem/condition-ver-status', 'confirmed', 'Confirmed'),
      category: [code('http://terminology.hl7.org/CodeSystem/condition-category', 'encounter-diagnosis', 'Encounter Diagnosis')],
      code: code(SNOMED, snomed, display),
      subject: patient,
      encounter: encounter(enc),
      onsetDateTime: onset,
      recordedDate: onset,
    });
  });

  // Lab results and vital signs, at the check-ups and follow-ups
  const labDates = [[1, '2023-02-14'], [3, '2023-09-21'], [4, '2024-01-30'], [5, '2024-07-11']];
  const hba1c = [7.9, 7.2, 6.9, 6.6];
  const glucose = [162, 141, 133, 121];
  const ldl = [148, 131, 118, 104];
  const weight = [86.4, 84.9, 83.1, 81.7];
  const systolic = [148, 139, 134, 128];
  const diastolic = [94, 88, 85, 82];
  const observation = (suffix, date, enc, category, loinc, display, value) => ({
    resourceType: 'Observation',
    id: id(suffix),
    status: 'final',
    category: [code(OBS_CATEGORY, category, category === 'laboratory' ? 'Laboratory' : 'Vital Signs')],
    code: code(LOINC, loinc, display),
    subject: patient,
    encounter: encounter(enc),
    effectiveDateTime: `${date}T09:15:00-06:00`,
    ...value,
  });
  const quantity = (value, unit, ucum) => ({ valueQuantity: { value, unit, system: UCUM, code: ucum } });
  const labIds = [];
  labDates.forEach(([enc, date], i) => {
    const ids = [`a1c-${i + 1}`, `glucose-${i + 1}`, `ldl-${i + 1}`];
    labIds.push(ids.map(id));
    resources.push(observation(ids[0], date, enc, 'laboratory', '4548-4', 'Hemoglobin A1c/Hemoglobin.total in Blood', quantity(hba1c[i], '%', '%')));
    resources.push(observation(ids[1], date, enc, 'laboratory', '2345-7', 'Glucose [Mass/volume] in Serum or Plasma', quantity(glucose[i], 'mg/dL', 'mg/dL')));
    resources.push(observation(ids[2], date, enc, 'laboratory', '18262-6', 'Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay', quantity(ldl[i], 'mg/dL', 'mg/dL')));
    resources.push(observation(`weight-${i + 1}`, date, enc, 'vital-signs', '29463-7', 'Body weight', quantity(weight[i], 'kg', 'kg')));
    resources.push(observation(`height-${i + 1}`, date, enc, 'vital-signs', '8302-2', 'Body height', quantity(165, 'cm', 'cm')));
    resources.push(observation(`bmi-${i + 1}`, date, enc, 'vital-signs', '39156-5', 'Body mass index (BMI) [Ratio]',
      quantity(Math.round((weight[i] / (1.65 * 1.65)) * 10) / 10, 'kg/m2', 'kg/m2')));
    resources.push(observation(`bp-${i + 1}`, date, enc, 'vital-signs', '85354-9', 'Blood pressure panel with all children optional', {
      component: [
        { code: code(LOINC, '8480-6', 'Systolic blood pressure'), valueQuantity: { value: systolic[i], unit: 'mmHg', system: UCUM, code: 'mm[Hg]' } },
        { code: code(LOINC, '8462-4', 'Diastolic blood pressure'), valueQuantity: { value: diastolic[i], unit: 'mmHg', system: UCUM, code: 'mm[Hg]' } },
      ],
    }));
    resources.push(observation(`heart-rate-${i + 1}`, date, enc, 'vital-signs', '8867-4', 'Heart rate', quantity(72 + i, 'beats/minute', '/min')));
  });
  // The emergency visit: an asthma attack
  resources.push(observation('spo2-er', '2023-06-03', 2, 'vital-signs', '59408-5', 'Oxygen saturation in Arterial blood by Pulse oximetry', quantity(93, '%', '%')));
  resources.push(observation('resp-rate-er', '2023-06-03', 2, 'vital-signs', '9279-1', 'Respiratory rate', quantity(24, 'breaths/minute', '/min')));

  // Lab reports grouping each visit's results
  labDates.forEach(([enc, date], i) => {
    resources.push({
      resourceType: 'DiagnosticReport',
      id: id(`report-${i + 1}`),
      status: 'final',
      category: [code('http://terminology.hl7.org/CodeSystem/v2-0074', 'LAB', 'Laboratory')],
      code: code(LOINC, '11502-2', 'Laboratory report'),
      subject: patient,
      encounter: encounter(enc),
      effectiveDateTime: `${date}T09:15:00-06:00`,
      issued: `${date}T16:00:00-06:00`,
      result: labIds[i].map((resultId) => ({ reference: `Observation/${resultId}` })),
    });
  });

  // Medicines
  const medicines = [
    ['860975', 'metformin hydrochloride 500 MG Extended Release Oral Tablet', 'Take 1 tablet by mouth twice a day with meals', '2023-02-14', 1],
    ['314076', 'lisinopril 10 MG Oral Tablet', 'Take 1 tablet by mouth once a day', '2023-02-14', 1],
    ['745679', 'albuterol 0.09 MG/ACTUAT Metered Dose Inhaler', 'Inhale 2 puffs every 4 to 6 hours as needed for wheezing', '2023-06-03', 2],
    ['259255', 'atorvastatin 80 MG Oral Tablet', 'Take 1 tablet by mouth every evening', '2023-09-21', 3],
    ['1373463', 'canagliflozin 100 MG Oral Tablet', 'Take 1 tablet by mouth before breakfast', '2024-01-30', 4],
  ];
  medicines.forEach(([rxnorm, display, instructions, date, enc], i) => {
    resources.push({
      resourceType: 'MedicationRequest',
      id: id(`med-${i + 1}`),
      status: 'active',
      intent: 'order',
      medicationCodeableConcept: code(RXNORM, rxnorm, display),
      subject: patient,
      encounter: encounter(enc),
      authoredOn: date,
      requester: { display: 'Dr. Maria Alvarez' },
      dosageInstruction: [{ text: instructions }],
    });
  });

  // Immunizations
  const immunizations = [
    ['150', 'influenza, injectable, quadrivalent, preservative free', '2023-10-05'],
    ['208', 'COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose', '2023-10-05'],
    ['115', 'Tdap', '2024-01-30'],
    ['150', 'influenza, injectable, quadrivalent, preservative free', '2024-10-09'],
  ];
  immunizations.forEach(([cvx, display, date], i) => {
    resources.push({
      resourceType: 'Immunization',
      id: id(`imm-${i + 1}`),
      status: 'completed',
      vaccineCode: code(CVX, cvx, display),
      patient,
      occurrenceDateTime: date,
      primarySource: true,
    });
  });

  // Allergies
  [['91936005', 'Allergy to penicillin', 'medication', 'high'], ['91935009', 'Allergy to peanuts', 'food', 'high']]
    .forEach(([snomed, display, category, criticality], i) => {
      resources.push({
        resourceType: 'AllergyIntolerance',
        id: id(`allergy-${i + 1}`),
        clinicalStatus: code('http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', 'active', 'Active'),
        verificationStatus: code('http://terminology.hl7.org/CodeSystem/allergyintolerance-verification', 'confirmed', 'Confirmed'),
        category: [category],
        criticality,
        code: code(SNOMED, snomed, display),
        patient,
        recordedDate: '2023-02-14',
      });
    });

  // Procedures
  [['2023-06-03', 2, '56251003', 'Nebulizer therapy'], ['2023-09-21', 3, '127783003', 'Spirometry']]
    .forEach(([date, enc, snomed, display], i) => {
      resources.push({
        resourceType: 'Procedure',
        id: id(`proc-${i + 1}`),
        status: 'completed',
        code: code(SNOMED, snomed, display),
        subject: patient,
        encounter: encounter(enc),
        performedDateTime: `${date}T10:00:00-06:00`,
      });
    });

  return resources;
}

/** How many resources of each type sampleMemberResources() gives, e.g. {Patient: 1, Observation: 34, ...}. */
export function countByType(resources) {
  const counts = {};
  for (const r of resources) counts[r.resourceType] = (counts[r.resourceType] ?? 0) + 1;
  return counts;
}
